"""The streaming recommender: one fixed-size state per user, one model ``step`` per new interaction.

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
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch

from .bundle import Bundle, load_bundle
from .engine import make_engine
from .stores import StateStore, Update, open_store

__all__ = ["Recommender", "Recommendation", "UnknownItemError", "ConflictError"]


class UnknownItemError(ValueError):
    """An item token that is not in the bundle's catalogue (nothing was applied)."""


class ConflictError(RuntimeError):
    """Other writers kept moving a user's state: the update was not applied."""


@dataclass
class Recommendation:
    items: list[str]
    scores: list[float]


class _Timer:
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


class Recommender:
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
        self.store = open_store(store) if isinstance(store, str) else store
        self.store.attach(f"{self.bundle.fingerprint[:16]}-{self.engine.dtype}-{self.engine.state_bytes}")
        self.max_retries = max_retries
        self.timer = _Timer()
        self.n_items = self.bundle.n_items

    # ------------------------------------------------------------------ tokens
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
        return self._apply([user] * len(ids), ids)[user]

    def observe_batch(self, events: Iterable[tuple]) -> dict[str, int]:
        """Apply ``(user, item)`` events in order (a user may appear several times), all or nothing.

        All users advance together: one batched step per round, round r holding each user's r-th
        event of the batch (one round when every user appears once). Returns user -> new version.
        """
        events = [(str(u), it) for u, it in events]
        return self._apply([u for u, _ in events], self.item_ids([it for _, it in events], where="events"))

    def _apply(self, event_users: list[str], ids: list[int]) -> dict[str, int]:
        per_user: dict[str, list[int]] = {}
        for user, i in zip(event_users, ids):
            per_user.setdefault(user, []).append(i)
        if not per_user:
            return {}
        users = list(per_user)
        for _ in range(self.max_retries):
            t = time.perf_counter()
            records = self.store.load(users)
            t = self.timer.add("store_load", t)
            hidden, state = self._decode(records)
            t = self.timer.add("decode", t)
            hidden, state = self._advance_rounds(users, per_user, hidden, state)
            t = self.timer.add("step", t)
            blobs = self.engine.pack(hidden, state)
            updates = []
            for user, rec, blob in zip(users, records, blobs):
                old = 0 if rec is None else rec.version
                new_ids = np.asarray(per_user[user], dtype=np.int32)
                updates.append(Update(user, old, old + len(new_ids), blob, new_ids.tobytes()))
            t = self.timer.add("encode", t)
            ok = self.store.commit(updates)
            self.timer.add("store_commit", t)
            if ok:
                return {u.user: u.new_version for u in updates}
        raise ConflictError(f"{len(users)} user(s) changed under {self.max_retries} consecutive attempts; "
                            f"nothing was applied")

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
        records = self.store.load(users)
        t = self.timer.add("store_load", t)
        known = [i for i, r in enumerate(records) if r is not None]
        with torch.inference_mode():
            scores = self.engine.empty_scores.expand(len(users), -1).clone()  # [B n_items]
            if known:
                hidden, _ = self.engine.unpack([records[i].state for i in known])
                t = self.timer.add("decode", t)
                scores[known] = self.engine.scores(hidden)
                t = self.timer.add("score", t)
            scores[:, 0] = float("-inf")  # padding id
            if exclude_seen and known:
                seen = [np.frombuffer(records[i].seen, dtype=np.int32) for i in known]
                rows = np.repeat(np.asarray(known), [len(s) for s in seen])
                items = np.concatenate(seen).astype(np.int64)
                scores[torch.from_numpy(rows), torch.from_numpy(items)] = float("-inf")
            top = scores.topk(k, dim=1)
        self.timer.add("mask_topk", t)
        out = []
        tokens = self.bundle.tokens
        for vals, idx in zip(top.values.tolist(), top.indices.tolist()):
            keep = [j for j, v in enumerate(vals) if v != float("-inf")]  # fewer than k items left
            out.append(Recommendation([tokens[idx[j]] for j in keep], [vals[j] for j in keep]))
        return out

    def history(self, user: str) -> tuple[int, list[str]]:
        """(version, the user's item tokens in order); (0, []) for a user never seen."""
        rec = self.store.load([str(user)])[0]
        if rec is None:
            return 0, []
        return rec.version, [self.bundle.tokens[i] for i in np.frombuffer(rec.seen, dtype=np.int32)]

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

    def close(self) -> None:
        self.store.close()
