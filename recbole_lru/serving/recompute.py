"""The baseline a transformer server runs: keep each user's history in the store and re-encode it
for every recommendation. The benchmark serves SASRec this way next to LRURec's fixed-size state.

Everything but the re-encoding is :class:`~.core.ServingBase`, shared with
:class:`~.recommender.Recommender`: the same store and compare-and-set writes, the same scoring
and top-k (:mod:`.scoring`), the same routes and micro-batching through
:func:`~recbole_lru.serving.app.create_app`.
"""
from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Mapping, Sequence

import numpy as np
import torch

from .core import ServingBase
from .scoring import Scorer
from .stores import StateStore, Update, open_store

__all__ = ["RecomputeRecommender"]


class RecomputeRecommender(ServingBase):
    """A transformer served from the stored history: every recommendation re-encodes the user's
    last ``max_len`` items (one batched forward for a batch of users).

    Args:
        model: a RecBole sequential model in eval mode with ``forward(item_seq, item_seq_len)`` and
            a tied ``item_embedding`` (SASRec, ...).
        name: names the model in ``/health`` and its key space in the store.
        store: a store or its URL.
        tokens: raw item tokens, position = internal id.
    """

    outputs_read_history = True

    def __init__(self, model, name: str, store: StateStore | str, tokens: list[str], max_retries: int = 64):
        self.model, self.max_len = model, model.max_seq_length
        self.bundle = SimpleNamespace(model_name=name, tokens=list(tokens),
                                      token2id={t: i for i, t in enumerate(tokens) if i})
        # no learned empty-history output: a user never seen gets every item at score 0
        self.scorer = Scorer.for_model(model)
        self.store = open_store(store) if isinstance(store, str) else store
        self.store.attach(name)
        self.max_retries = max_retries
        self._init_common()

    def _new_states(self, users, per_user, records):
        return [b""] * len(users)  # the history (the store's ``seen``) is all this model keeps

    def _outputs(self, records, known):
        t = time.perf_counter()
        seen = [np.frombuffer(records[i].seen, dtype=np.int32).astype(np.int64) for i in known]
        lens = torch.tensor([min(len(s), self.max_len) for s in seen])
        window = torch.zeros(len(known), int(lens.max()), dtype=torch.long)  # right-padded, as RecBole
        for row, s in enumerate(seen):
            window[row, : lens[row]] = torch.from_numpy(s[-self.max_len:])
        hidden = self.model.forward(window, lens)
        self.timer.add("encode_history", t)
        return hidden

    def bootstrap(self, histories: Mapping[str, Sequence]) -> int:
        """New users' whole histories (raw tokens, in order) in one commit."""
        ids = {str(u): self.item_ids(list(h), where=f"histories[{u!r}]") for u, h in histories.items()}
        updates = [Update(u, 0, len(i), b"", np.asarray(i, dtype=np.int32).tobytes()) for u, i in ids.items() if i]
        if not self.store.commit(updates):
            raise ValueError("bootstrap only fills new users; some already have interactions")
        return len(updates)
