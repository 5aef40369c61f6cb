"""The baseline a transformer server runs: keep each user's history in the store and re-encode it
for every recommendation. The benchmark serves SASRec this way next to LRURec's fixed-size state."""
from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import torch

from .recommender import Recommendation, _Timer
from .stores import Update, open_store

__all__ = ["RecomputeRecommender"]


class RecomputeRecommender:
    """A transformer served from the stored history: every recommendation re-encodes the user's
    last ``max_len`` items. Same store, same compare-and-set writes and the same routes (through
    :func:`~recbole_lru.serving.app.create_app`) as :class:`~recbole_lru.serving.Recommender`.

    Args:
        model: a RecBole sequential model in eval mode with ``forward(item_seq, item_seq_len)`` and
            a tied ``item_embedding`` (SASRec, ...).
        name: names the model in ``/health`` and its key space in the store.
    """

    def __init__(self, model, name: str, store_url: str, tokens: list[str]):
        self.model, self.max_len, self.n_items = model, model.max_seq_length, len(tokens)
        self.bundle = SimpleNamespace(model_name=name, tokens=tokens,
                                      token2id={t: i for i, t in enumerate(tokens) if i})
        self.store = open_store(store_url)
        self.store.attach(name)
        self.timer = _Timer()

    def observe_many(self, user, items):
        ids = np.asarray([self.bundle.token2id[str(i)] for i in items], dtype=np.int32)
        while True:
            t = time.perf_counter()
            rec = self.store.load([user])[0]
            t = self.timer.add("store_load", t)
            v = 0 if rec is None else rec.version
            ok = self.store.commit([Update(user, v, v + len(ids), b"", ids.tobytes())])
            self.timer.add("store_commit", t)
            if ok:
                return v + len(ids)

    def observe(self, user, item):
        return self.observe_many(user, [item])

    def observe_batch(self, events):
        """One interaction per distinct user (what the benchmark sends), one commit."""
        users = [u for u, _ in events]
        while True:
            t = time.perf_counter()
            records = self.store.load(users)
            t = self.timer.add("store_load", t)
            updates = []
            for (user, item), rec in zip(events, records):
                v = 0 if rec is None else rec.version
                ids = np.asarray([self.bundle.token2id[str(item)]], dtype=np.int32)
                updates.append(Update(user, v, v + 1, b"", ids.tobytes()))
            ok = self.store.commit(updates)
            self.timer.add("store_commit", t)
            if ok:
                return {u.user: u.new_version for u in updates}

    def recommend(self, user, k=10, exclude_seen=True):
        return self.recommend_batch([user], k=k, exclude_seen=exclude_seen)[0]

    def recommend_batch(self, users, k=10, exclude_seen=True):
        t = time.perf_counter()
        records = self.store.load(users)
        t = self.timer.add("store_load", t)
        seen = [np.frombuffer(r.seen, dtype=np.int32).astype(np.int64) for r in records]
        lens = torch.tensor([min(len(s), self.max_len) for s in seen])
        window = torch.zeros(len(users), int(lens.max()), dtype=torch.long)  # right-padded, as RecBole
        for row, s in enumerate(seen):
            window[row, : lens[row]] = torch.from_numpy(s[-self.max_len:])
        with torch.inference_mode():
            hidden = self.model.forward(window, lens)
            t = self.timer.add("encode_history", t)
            scores = hidden @ self.model.item_embedding.weight.t()
            t = self.timer.add("score", t)
            scores[:, 0] = float("-inf")
            if exclude_seen:
                rows = torch.from_numpy(np.repeat(np.arange(len(users)), [len(s) for s in seen]))
                scores[rows, torch.from_numpy(np.concatenate(seen))] = float("-inf")
            top = scores.topk(k, dim=1)
        self.timer.add("mask_topk", t)
        return [Recommendation([self.bundle.tokens[i] for i in idx], vals)
                for idx, vals in zip(top.indices.tolist(), top.values.tolist())]

    def history(self, user):
        rec = self.store.load([user])[0]
        return (0, []) if rec is None else (rec.version, [self.bundle.tokens[i] for i in np.frombuffer(rec.seen, np.int32)])

    def bootstrap(self, histories):
        self.store.commit([Update(u, 0, len(h), b"", np.asarray([self.bundle.token2id[i] for i in h], np.int32).tobytes())
                           for u, h in histories.items()])

    def close(self):
        self.store.close()
