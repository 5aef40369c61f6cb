"""The interface every state store implements: batched reads and an all-or-nothing
compare-and-set write, keyed by user.

The model runs in the serving process, between a read and a write, so a store cannot apply an
interaction by itself. Every write therefore names the version it was computed from; the store
applies the whole batch only if every user is still at that version, and the recommender reads
again and recomputes otherwise. Two events for one user arriving at two processes at once are
thus both applied, one after the other, in the order the store accepted them, and no update is
ever half-applied.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

__all__ = ["StoredUser", "Update", "StateStore", "StoreError"]


class StoreError(RuntimeError):
    """A store that cannot be opened or that holds states of another model."""


@dataclass(frozen=True)
class StoredUser:
    """One user's row: ``version`` = number of interactions applied, ``state`` the packed
    (hidden, recurrent state) of fixed size, ``seen`` the item ids in order as int32 bytes."""

    version: int
    state: bytes
    seen: bytes


@dataclass(frozen=True)
class Update:
    """Set ``user`` to ``state`` at ``new_version`` and append ``seen_suffix`` to its seen items,
    if the user is still at ``expected_version`` (0: the user has no row yet)."""

    user: str
    expected_version: int
    new_version: int
    state: bytes
    seen_suffix: bytes


class StateStore:
    """Base class. ``attach(namespace)`` binds the store to one model (bundle fingerprint and
    state layout): a store refuses to mix the states of two models."""

    url: str = ""

    def attach(self, namespace: str) -> None:
        raise NotImplementedError

    def load(self, users: Sequence[str], seen: bool = True) -> list[StoredUser | None]:
        """The rows of ``users`` (None for a user never seen), read at one point in time;
        ``seen=False`` leaves ``seen`` empty (a write needs only the version and the state)."""
        raise NotImplementedError

    def commit(self, updates: Sequence[Update]) -> bool:
        """Apply every update, or none if any user has moved past its ``expected_version``.
        Returns True once the updates are durable (as far as the store's settings promise).

        A user may appear once: each update is checked against the stored version, so a user's
        second update in one commit could never apply."""
        if not updates:
            return True
        if len({u.user for u in updates}) < len(updates):
            raise ValueError("a commit holds one update per user; merge a user's updates into one")
        return self._commit(updates)

    def _commit(self, updates: Sequence[Update]) -> bool:
        """:meth:`commit` of a non-empty batch with one update per user (the store's own part)."""
        raise NotImplementedError

    def clear(self) -> None:
        """Delete every user of this namespace."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
