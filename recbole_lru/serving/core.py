"""What every served model shares: raw tokens, the observe / recommend API and its batch forms,
all-or-nothing compare-and-set writes with retries, and scoring + top-k (:mod:`.scoring`).

A subclass says only how a user's stored row becomes its output vector (``_outputs``) and what
a write stores (``_new_states``): :class:`~.recommender.Recommender` keeps a fixed-size model
state per user, :class:`~.recompute.RecomputeRecommender` re-encodes the stored history.
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch

from .stores import StoredUser, Update

__all__ = ["ServingBase", "Recommendation", "UnknownItemError", "ConflictError", "Timer"]


class UnknownItemError(ValueError):
    """An item token that is not in the bundle's catalogue (nothing was applied)."""


class ConflictError(RuntimeError):
    """Other writers kept moving a user's state: the update was not applied."""


@dataclass
class Recommendation:
    items: list[str]
    scores: list[float]


class Timer:
    """Seconds and calls per phase (store, step, scoring, top-k), for the latency breakdown."""

    def __init__(self):
        self.seconds, self.calls = defaultdict(float), defaultdict(int)

    def add(self, phase: str, start: float) -> float:
        now = time.perf_counter()
        self.seconds[phase] += now - start
        self.calls[phase] += 1
        return now

    def reset(self):
        self.seconds.clear()
        self.calls.clear()


class ServingBase:
    """Needs ``self.bundle`` (``tokens``, ``token2id``, ``model_name``), ``self.store`` (attached),
    ``self.scorer`` and ``self.max_retries``; see the subclasses."""

    bundle = store = scorer = None
    max_retries = 64
    outputs_read_history = False  # True when ``_outputs`` reads the seen items (re-encoding models)

    def _init_common(self):
        self.timer = Timer()
        self.n_items = len(self.bundle.tokens)

    # ------------------------------------------------------------------ subclass hooks
    def _new_states(self, users: list[str], per_user: dict[str, list[int]],
                    records: list[StoredUser | None]) -> list[bytes]:
        """The state bytes each user holds after its new item ids (timed by the subclass)."""
        raise NotImplementedError

    def _outputs(self, records: list[StoredUser], known: list[int]) -> torch.Tensor:
        """(len(known), D) output vectors of the users at ``known`` (every one has a row)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ validation
    def item_ids(self, items: Sequence, where: str = "items") -> list[int]:
        """Raw item tokens -> internal ids; one error naming the first unknown token."""
        token2id = self.bundle.token2id
        out = []
        for i, item in enumerate(items):
            idx = token2id.get(str(item))
            if idx is None:
                raise UnknownItemError(f"unknown item token {str(item)!r} at {where}[{i}]: it is not in "
                                       f"this model's catalogue of {self.n_items - 1} items; nothing was applied")
            out.append(idx)
        return out

    def check_k(self, k) -> int:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= self.n_items - 1:
            raise ValueError(f"k={k!r} must be an integer in [1, {self.n_items - 1}] (the catalogue size)")
        return int(k)

    # ------------------------------------------------------------------ writes
    def observe(self, user: str, item) -> int:
        """Append one interaction; returns the user's new version (interactions applied)."""
        return self.observe_many(user, [item])

    def observe_many(self, user: str, items: Sequence) -> int:
        """Append several interactions of one user, in order, all or nothing."""
        user = str(user)
        ids = self.item_ids(items, where="items")
        if not ids:
            return self.history(user)[0]
        return self.apply_events([user] * len(ids), ids)[user]

    def observe_batch(self, events: Iterable[tuple]) -> dict[str, int]:
        """Apply ``(user, item)`` events in order (a user may appear several times), all or nothing.

        All users advance together: one batched step per round, round r holding each user's r-th
        event of the batch (one round when every user appears once). Returns user -> new version.
        """
        events = [(str(u), it) for u, it in events]
        return self.apply_events([u for u, _ in events], self.item_ids([it for _, it in events], where="events"))

    def apply_events(self, event_users: Sequence[str], ids: Sequence[int]) -> dict[str, int]:
        """Validated events (user, internal item id), in order, in one all-or-nothing commit."""
        return self._apply(event_users, ids, keep_seen=False)[0]

    def _apply(self, event_users, ids, keep_seen: bool) -> tuple[dict[str, int], dict[str, StoredUser]]:
        """:meth:`apply_events`, also returning each user's row as this commit wrote it (its seen
        items only when ``keep_seen``)."""
        per_user: dict[str, list[int]] = {}
        for user, i in zip(event_users, ids):
            per_user.setdefault(user, []).append(int(i))
        if not per_user:
            return {}, {}
        users = list(per_user)
        for _ in range(self.max_retries):
            t = time.perf_counter()
            records = self.store.load(users, seen=keep_seen)
            self.timer.add("store_load", t)
            blobs = self._new_states(users, per_user, records)
            t = time.perf_counter()
            updates = []
            for user, rec, blob in zip(users, records, blobs):
                old = 0 if rec is None else rec.version
                new_ids = np.asarray(per_user[user], dtype=np.int32)
                updates.append(Update(user, old, old + len(new_ids), blob, new_ids.tobytes()))
            ok = self.store.commit(updates)
            self.timer.add("store_commit", t)
            if ok:
                after = {u.user: StoredUser(u.new_version, u.state, (rec.seen if rec else b"") + u.seen_suffix)
                         for u, rec in zip(updates, records)}
                return {u.user: u.new_version for u in updates}, after
        raise ConflictError(f"{len(users)} user(s) changed under {self.max_retries} consecutive attempts; "
                            f"nothing was applied")

    # ------------------------------------------------------------------ reads
    def recommend(self, user: str, k: int = 10, exclude_seen: bool = True) -> Recommendation:
        """Top-k raw item tokens with scores, best first; a user never seen gets the
        empty-history recommendations."""
        return self.recommend_batch([user], k=k, exclude_seen=exclude_seen)[0]

    def recommend_batch(self, users: Sequence[str], k: int = 10, exclude_seen: bool = True) -> list[Recommendation]:
        """:meth:`recommend` for many users: one store read, one scoring matmul, one top-k."""
        k = self.check_k(k)
        users = [str(u) for u in users]
        if not users:
            return []
        t = time.perf_counter()
        records = self.store.load(users, seen=exclude_seen or self.outputs_read_history)
        self.timer.add("store_load", t)
        return self._recommend_rows(records, k, exclude_seen)

    # ------------------------------------------------------------------ both at once
    def observe_and_recommend(self, user: str, items: Sequence, k: int = 10,
                              exclude_seen: bool = True) -> tuple[int, Recommendation]:
        """:meth:`observe_many` then :meth:`recommend` on the state this call wrote, in one store
        read: -> (the user's new version, its top-k)."""
        user = str(user)
        versions, recs = self.observe_and_recommend_batch([(user, it) for it in items], k, exclude_seen)
        return versions[user], recs[0]

    def observe_and_recommend_batch(self, events: Iterable[tuple], k: int = 10,
                                    exclude_seen: bool = True) -> tuple[dict[str, int], list[Recommendation]]:
        """:meth:`observe_batch` then :meth:`recommend_batch` for the users of ``events`` (in order
        of first appearance), from the rows this commit wrote: -> (versions, recommendations)."""
        k = self.check_k(k)
        events = [(str(u), it) for u, it in events]
        if not events:
            raise ValueError("events is empty: give at least one (user, item) pair")
        ids = self.item_ids([it for _, it in events], where="events")
        versions, after = self._apply([u for u, _ in events], ids, keep_seen=exclude_seen or self.outputs_read_history)
        return versions, self._recommend_rows(list(after.values()), k, exclude_seen)

    def _recommend_rows(self, records: list[StoredUser | None], k: int, exclude_seen: bool) -> list[Recommendation]:
        """Scoring + top-k of the users whose rows are ``records`` (None: never seen)."""
        known = [i for i, r in enumerate(records) if r is not None]
        with torch.inference_mode():
            hidden = self._outputs(records, known) if known else None
            t = time.perf_counter()
            scores = self.scorer.rows(len(records), known, hidden)
            t = self.timer.add("score", t)
            seen = None
            if exclude_seen:
                seen = [None if r is None else np.frombuffer(r.seen, dtype=np.int32) for r in records]
            top = self.scorer.top_k(scores, seen, k)
            values, indices = top.values.tolist(), top.indices.tolist()
        self.timer.add("mask_topk", t)
        out = []
        tokens = self.bundle.tokens
        for vals, idx in zip(values, indices):
            if vals[-1] == float("-inf"):  # fewer than k items left
                keep = [j for j, v in enumerate(vals) if v != float("-inf")]
                vals, idx = [vals[j] for j in keep], [idx[j] for j in keep]
            out.append(Recommendation([tokens[i] for i in idx], vals))
        return out

    def history(self, user: str) -> tuple[int, list[str]]:
        """(version, the user's item tokens in order); (0, []) for a user never seen."""
        rec = self.store.load([str(user)])[0]
        if rec is None:
            return 0, []
        return rec.version, [self.bundle.tokens[i] for i in np.frombuffer(rec.seen, dtype=np.int32)]

    def close(self) -> None:
        self.store.close()
