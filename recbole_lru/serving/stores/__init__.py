"""State stores behind one interface (:class:`StateStore`): SQLite (embedded default) and Redis
(shared by several serving processes). :func:`open_store` turns a URL into a store."""
from __future__ import annotations

from urllib.parse import parse_qsl

from .base import StateStore, StoredUser, StoreError, Update
from .sqlite import SQLiteStore

__all__ = ["StateStore", "StoredUser", "StoreError", "Update", "SQLiteStore", "RedisStore", "open_store"]


def __getattr__(name):
    if name == "RedisStore":  # the redis package is only needed for a Redis store
        from .redis import RedisStore

        return RedisStore
    raise AttributeError(name)


def open_store(url: str) -> StateStore:
    """``sqlite:PATH[?synchronous=full|normal&group_commit_ms=MS&checkpoint_ms=MS]`` or ``redis://HOST:PORT/DB``
    (``rediss://`` and ``unix://`` too; ``?prefix=NAME`` picks the key prefix)."""
    if url.startswith("sqlite:"):
        path, _, query = url[len("sqlite:"):].partition("?")
        if path.startswith("//"):  # sqlite:///abs/path, as in SQLAlchemy URLs
            path = path[2:]
        if not path:
            raise ValueError(f"store URL {url!r} names no file: write sqlite:PATH")
        options = dict(parse_qsl(query, strict_parsing=bool(query)))
        unknown = set(options) - {"synchronous", "group_commit_ms", "checkpoint_ms"}
        if unknown:
            raise ValueError(f"unknown SQLite store option(s) {sorted(unknown)} in {url!r}; "
                             f"known: synchronous, group_commit_ms, checkpoint_ms")
        ms = {}
        for key in ("group_commit_ms", "checkpoint_ms"):
            if key in options:
                try:
                    ms[key] = float(options[key])
                except ValueError:
                    raise ValueError(f"{key}={options[key]!r} in {url!r} must be a number of milliseconds") from None
        return SQLiteStore(path, synchronous=options.get("synchronous", "full"), **ms)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from .redis import RedisStore

        base, _, query = url.partition("?")
        options = dict(parse_qsl(query))
        prefix = options.pop("prefix", "recbole_lru")
        rest = "&".join(f"{k}={v}" for k, v in options.items())
        return RedisStore(base + ("?" + rest if rest else ""), prefix=prefix)
    raise ValueError(f"unknown store URL {url!r}: use sqlite:PATH or redis://HOST:PORT/DB")
