"""Server-side micro-batching: requests that arrive together are served by one batched call.

HTTP handlers validate their own request (unknown items, ``k``) and hand the checked work to
:class:`MicroBatcher`, which waits ``window_ms`` after the first request for more (0: one turn of
the event loop, enough for requests already read), then runs everything waiting: the writes of
the batch as one batched step and one compare-and-set commit, the reads as one store read, one
scoring product and one top-k per ``(k, exclude_seen)``. Requests arriving while a batch runs
form the next one, so under load the batches grow by themselves.

The batch runs on the event loop's own thread. A hand-off to a worker thread cost about 1 ms per
request on the loaded 2-core test machine (GIL switching), more than the batch's own work; while a
batch runs, new requests wait in the socket buffers. A long batch (a slow store) therefore delays
every request of the process, which is what a one-model-per-process server does anyway.

Guarantees (the same as one request at a time):

* all or nothing per request: a batch's writes are one commit; if it fails, each request is
  retried alone so that one request's failure is not another's;
* per-user order: requests are applied in arrival order. Writes run before reads within a batch,
  so a batch is cut where a write follows a read of the same user;
* each write gets the version its own events led to, as if applied alone.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

__all__ = ["MicroBatcher"]


@dataclass
class _Write:
    users: list[str]  # one per event, in order
    ids: list[int]


@dataclass
class _Read:
    users: list[str]
    k: int
    exclude_seen: bool


@dataclass
class _Segment:
    writes: list = field(default_factory=list)  # (index in batch, _Write)
    reads: list = field(default_factory=list)
    read_users: set = field(default_factory=set)


class MicroBatcher:
    """Coalesces concurrent ``write`` / ``read`` calls on one recommender (any
    :class:`~.core.ServingBase`).

    Args:
        rec: the recommender.
        window_ms: how long to wait for more requests after the first one of an idle period.
        max_batch: the most requests served by one batch.
    """

    def __init__(self, rec, window_ms: float = 0.0, max_batch: int = 256):
        if window_ms < 0:
            raise ValueError(f"window_ms={window_ms!r} must be >= 0")
        self.rec, self.window_s, self.max_batch = rec, window_ms / 1000.0, max_batch
        self._pending: list = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self.batches = 0  # batches run, for tests and monitoring
        self.requests = 0

    async def write(self, users: list[str], ids: list[int]) -> dict[str, int]:
        """Validated events (one user per event) -> {user: version after this request's events}."""
        return await self._submit(_Write(list(users), list(ids)))

    async def read(self, users: list[str], k: int, exclude_seen: bool) -> list:
        """Validated users and ``k`` -> one Recommendation per user."""
        return await self._submit(_Read(list(users), k, exclude_seen))

    async def _submit(self, op):
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._loop())
        fut = loop.create_future()
        self._pending.append((op, fut))
        self._wake.set()
        return await fut

    async def _loop(self) -> None:
        while True:
            if not self._pending:  # idle: wait for a request, then for the window
                self._wake.clear()
                await self._wake.wait()
                await asyncio.sleep(self.window_s)
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch:]
            try:
                outcomes = self.run([op for op, _ in batch])
            except Exception as err:  # noqa: BLE001  (no request may wait forever)
                outcomes = [(False, err)] * len(batch)
            for (_, fut), (ok, value) in zip(batch, outcomes):
                if fut.done():  # the client went away
                    continue
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)

    # ------------------------------------------------------------------ one batch
    def run(self, ops: list) -> list[tuple[bool, object]]:
        """Serve ``ops`` in arrival order; -> per op (True, result) or (False, exception)."""
        self.batches += 1
        self.requests += len(ops)
        out: list = [None] * len(ops)
        for seg in self._segments(ops):
            self._run_writes(seg.writes, out)
            self._run_reads(seg.reads, out)
        return out

    @staticmethod
    def _segments(ops) -> list[_Segment]:
        segments = [_Segment()]
        for i, op in enumerate(ops):
            seg = segments[-1]
            if isinstance(op, _Write):
                if seg.read_users.intersection(op.users):  # it must not run before an earlier read
                    seg = _Segment()
                    segments.append(seg)
                seg.writes.append((i, op))
            else:
                seg.reads.append((i, op))
                seg.read_users.update(op.users)
        return segments

    def _run_writes(self, writes, out) -> None:
        if not writes:
            return
        users = [u for _, w in writes for u in w.users]
        ids = [i for _, w in writes for i in w.ids]
        try:
            final = self.rec.apply_events(users, ids)
        except Exception as err:  # noqa: BLE001  (whatever failed, nothing of the batch was applied)
            if len(writes) == 1:
                out[writes[0][0]] = (False, err)
                return
            for index, w in writes:  # alone, so that one request's failure is only its own
                out[index] = _outcome(self.rec.apply_events, w.users, w.ids)
            return
        # each request's version: the final one minus the events of later requests in the batch
        later: dict[str, int] = {}
        for index, w in reversed(writes):
            mine = {}
            for u in w.users:
                mine[u] = final[u] - later.get(u, 0)
            for u in w.users:
                later[u] = later.get(u, 0) + 1
            out[index] = (True, mine)

    def _run_reads(self, reads, out) -> None:
        groups: dict[tuple, list] = {}
        for index, r in reads:
            groups.setdefault((r.k, r.exclude_seen), []).append((index, r))
        for (k, exclude_seen), members in groups.items():
            users = list(dict.fromkeys(u for _, r in members for u in r.users))
            ok, recs = _outcome(self.rec.recommend_batch, users, k=k, exclude_seen=exclude_seen)
            by_user = dict(zip(users, recs)) if ok else {}
            for index, r in members:  # a read changes nothing: a failure is every member's
                out[index] = (True, [by_user[u] for u in r.users]) if ok else (False, recs)


def _outcome(fn, *args, **kwargs) -> tuple[bool, object]:
    """(True, fn(...)) or (False, the exception it raised)."""
    try:
        return True, fn(*args, **kwargs)
    except Exception as err:  # noqa: BLE001  (handed to the request that caused it)
        return False, err
