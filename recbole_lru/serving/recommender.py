"""The streaming recommender: one fixed-size state per user, one model step per new interaction.

>>> rec = Recommender("bundle/", store="sqlite:states.sqlite")
>>> rec.observe("alice", "item_42")
>>> rec.recommend("alice", k=10)          # Recommendation(items=[...], scores=[...])

Items and users are raw tokens (strings). Every write is all or nothing: the tokens of a call are
checked before anything runs, and the new states reach the store in one compare-and-set, retried
from a fresh read when another writer got there first (see :mod:`recbole_lru.serving.stores.base`).
"""
from __future__ import annotations

import time
from collections import defaultdict
from typing import Mapping, Sequence

import numpy as np
import torch

from .bundle import Bundle, load_bundle
from .core import ConflictError, Recommendation, ServingBase, UnknownItemError
from .engine import make_engine
from .stores import StateStore, Update, open_store

__all__ = ["Recommender", "Recommendation", "UnknownItemError", "ConflictError"]


class Recommender(ServingBase):
    """Serve a bundle from a state store.

    Args:
        bundle: a bundle folder or a loaded :class:`Bundle`.
        store: a :class:`StateStore` or a store URL (default: an SQLite file ``states.sqlite``).
        dtype: the model's precision when ``bundle`` is a folder (float32; float64 for exact checks).
        max_retries: compare-and-set attempts before :class:`ConflictError`.
    """

    def __init__(self, bundle, store: StateStore | str = "sqlite:states.sqlite",
                 dtype: torch.dtype = torch.float32, max_retries: int = 64):
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle, dtype=dtype)
        self.engine = make_engine(self.bundle)
        self.scorer = self.engine.scorer
        self.store = open_store(store) if isinstance(store, str) else store
        self.store.attach(f"{self.bundle.fingerprint[:16]}-{self.engine.dtype}-{self.engine.state_bytes}")
        self.max_retries = max_retries
        self._init_common()

    # ------------------------------------------------------------------ hooks of ServingBase
    def _new_states(self, users, per_user, records):
        t = time.perf_counter()
        hidden, state = self._decode(records)
        t = self.timer.add("decode", t)
        hidden, state = self._advance_rounds(users, per_user, hidden, state)
        t = self.timer.add("step", t)
        blobs = self.engine.pack(hidden, state)
        self.timer.add("encode", t)
        return blobs

    def _outputs(self, records, known):
        t = time.perf_counter()
        hidden, _ = self.engine.unpack([records[i].state for i in known])
        self.timer.add("decode", t)
        return hidden

    def _advance_rounds(self, users, per_user, hidden, state):
        if all(len(per_user[u]) == 1 for u in users):  # the common case: one round, no indexing
            with torch.inference_mode():
                return self.engine.advance(torch.tensor([per_user[u][0] for u in users]), state)
        lengths = torch.tensor([len(per_user[u]) for u in users])
        width = int(lengths.max())
        grid = torch.zeros(len(users), width, dtype=torch.long)
        for row, u in enumerate(users):
            grid[row, : len(per_user[u])] = torch.tensor(per_user[u])
        with torch.inference_mode():
            for r in range(width):
                active = lengths > r
                if bool(active.all()):
                    hidden, state = self.engine.advance(grid[:, r], state)
                    continue
                rows = active.nonzero().squeeze(1)
                h, s = self.engine.advance(grid[rows, r], self.engine.select(state, rows))
                hidden = hidden.index_copy(0, rows, h)
                state = self.engine.put(state, rows, s)
        return hidden, state

    def bootstrap(self, histories: Mapping[str, Sequence], batch_size: int = 256) -> int:
        """Give new users their whole histories in one ``encode`` pass per batch (no per-item step).

        Histories are raw tokens in time order. Every user must be new to the store (a user with
        interactions is refused: a recurrence cannot be encoded from the middle). Returns the number
        of users written. Batches are written one by one (each batch all or nothing).
        """
        items = {str(u): self.item_ids(list(seq), where=f"histories[{u!r}]") for u, seq in histories.items()}
        users = [u for u in items if items[u]]
        # similar lengths together: less padding per batch
        users.sort(key=lambda u: len(items[u]))
        for start in range(0, len(users), batch_size):
            part = users[start:start + batch_size]
            lens = torch.tensor([len(items[u]) for u in part])
            seq = torch.zeros(len(part), int(lens.max()), dtype=torch.long)
            for row, u in enumerate(part):
                seq[row, : lens[row]] = torch.tensor(items[u])
            with torch.inference_mode():
                hidden, state = self.engine.encode(seq, lens)
            blobs = self.engine.pack(hidden, state)
            updates = [Update(u, 0, len(items[u]), b, np.asarray(items[u], dtype=np.int32).tobytes())
                       for u, b in zip(part, blobs)]
            if not self.store.commit(updates):
                taken = [u for u, r in zip(part, self.store.load(part)) if r is not None]
                raise ConflictError(f"bootstrap only fills new users; {len(taken)} already have interactions "
                                    f"(e.g. {taken[:3]}); nothing of this batch was written")
        return len(users)

    def bootstrap_inter_file(self, path: str, user_field: str = "user_id", item_field: str = "item_id",
                             time_field: str | None = "timestamp", batch_size: int = 256) -> int:
        """:meth:`bootstrap` from a RecBole atomic ``.inter`` file (tab-separated, ``name:type``
        header), each user's interactions ordered by ``time_field`` (file order when None)."""
        import csv

        with open(path, newline="") as fh:
            reader = csv.reader(fh, delimiter="\t")
            header = [h.split(":")[0] for h in next(reader)]
            missing = [f for f in (user_field, item_field, time_field) if f is not None and f not in header]
            if missing:
                raise ValueError(f"{path} has no column(s) {missing}; its header names {header}")
            cu, ci = header.index(user_field), header.index(item_field)
            ct = header.index(time_field) if time_field is not None else None
            rows = defaultdict(list)
            for n, row in enumerate(reader):
                key = float(row[ct]) if ct is not None else 0.0
                rows[row[cu]].append((key, n, row[ci]))
        histories = {u: [it for _, _, it in sorted(r)] for u, r in rows.items()}
        return self.bootstrap(histories, batch_size=batch_size)

    # ------------------------------------------------------------------ helpers
    def _decode(self, records):
        """Stored rows -> batched (hidden, state); rows of new users get the empty state."""
        B = len(records)
        known = [i for i, r in enumerate(records) if r is not None]
        if len(known) == B:
            return self.engine.unpack([r.state for r in records])
        hidden = torch.zeros(B, self.engine.model.item_embedding.weight.shape[1], dtype=self.engine.dtype)
        state = self.engine.init_state(B)
        if known:
            h, s = self.engine.unpack([records[i].state for i in known])
            rows = torch.tensor(known)
            hidden = hidden.index_copy(0, rows, h)
            state = self.engine.put(state, rows, s)
        return hidden, state
