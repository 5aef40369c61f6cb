"""The shared store: Redis, for several serving processes (or machines) behind one load balancer.

Each user is one hash ``<prefix>:<namespace>:u:<user>`` with fields ``v`` (version), ``st``
(packed state) and ``seen`` (int32 item ids). Reads are one MULTI/EXEC of HMGETs (a consistent
snapshot). A write is one Lua script: Redis runs a script atomically, so checking every user's
version and writing every user happen with no other command in between; a batch whose check fails
writes nothing and the recommender recomputes from a fresh read. Compared with WATCH/MULTI, the
script needs one round trip and cannot be interleaved with another client's writes.

Durability is Redis's: an acknowledged write is in the server's memory; with ``appendonly yes``
and ``appendfsync always`` it is on disk before the reply.
"""
from __future__ import annotations

from typing import Sequence

from .base import StateStore, StoredUser, StoreError, Update

__all__ = ["RedisStore"]

# KEYS: one hash per user. ARGV: per user, 4 values: expected version, new version, state, seen suffix.
_CAS = """
for i, key in ipairs(KEYS) do
  local current = redis.call('HGET', key, 'v') or '0'
  if current ~= ARGV[4 * i - 3] then
    return 0
  end
end
for i, key in ipairs(KEYS) do
  local seen = redis.call('HGET', key, 'seen') or ''
  redis.call('HSET', key, 'v', ARGV[4 * i - 2], 'st', ARGV[4 * i - 1], 'seen', seen .. ARGV[4 * i])
end
return 1
"""


class RedisStore(StateStore):
    def __init__(self, url: str = "redis://127.0.0.1:6379/0", prefix: str = "recbole_lru", client=None):
        import redis

        self.url, self.prefix = url, prefix
        self.client = client if client is not None else redis.Redis.from_url(url)
        try:
            self.client.ping()
        except redis.RedisError as err:
            raise StoreError(f"cannot reach Redis at {url}: {err}") from None
        self._cas = self.client.register_script(_CAS)
        self.namespace = None

    def attach(self, namespace: str) -> None:
        # one key space per model: states of another bundle are never read as this one's
        self.namespace = namespace
        self._base = f"{self.prefix}:{namespace}:u:"

    def _key(self, user: str) -> str:
        if self.namespace is None:
            raise StoreError("the store is not attached to a model; Recommender(...) attaches it")
        return self._base + user

    def load(self, users: Sequence[str], seen: bool = True) -> list[StoredUser | None]:
        pipe = self.client.pipeline(transaction=True)
        fields = ("v", "st", "seen") if seen else ("v", "st")
        for u in users:
            pipe.hmget(self._key(u), *fields)
        out = []
        for version, state, *items in self._call(pipe.execute):
            out.append(None if version is None else StoredUser(int(version), state, (items or [b""])[0] or b""))
        return out

    def _commit(self, updates: Sequence[Update]) -> bool:
        args = []
        for u in updates:
            args += [str(u.expected_version), str(u.new_version), u.state, u.seen_suffix]
        return bool(self._call(self._cas, keys=[self._key(u.user) for u in updates], args=args))

    def _call(self, fn, *args, **kwargs):
        import redis

        try:
            return fn(*args, **kwargs)
        except redis.RedisError as err:  # the HTTP service answers 503 for a StoreError
            raise StoreError(f"Redis at {self.url} failed: {err}") from None

    def clear(self) -> None:
        pattern = self._key("*")
        batch = []
        for key in self.client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                self.client.delete(*batch)
                batch = []
        if batch:
            self.client.delete(*batch)

    def close(self) -> None:
        self.client.close()
