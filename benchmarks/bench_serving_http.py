"""The HTTP cells of ``bench_serving.py``: one uvicorn server process serving every cell, and
keep-alive clients taking turns cell by cell (see that file's docstring)."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
import time

import numpy as np
import torch

import bench_serving_report as report

USERS = 32  # users per cell, user0 ... user31 (bench_serving preloads them)


@contextlib.contextmanager
def server(cmd: list[str], probe_cell: str):
    """Start ``cmd --worker_port PORT`` and yield PORT once ``/<probe_cell>/health`` answers."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(cmd + ["--worker_port", str(port)], env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the benchmark's HTTP server exited with {proc.returncode}")
            try:
                httpx.get(f"http://127.0.0.1:{port}/{probe_cell}/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.5)
        yield port
    finally:
        proc.terminate()
        proc.wait()


def serve_worker(cells: dict, port: int, window_ms: float) -> None:
    """One uvicorn process serving every cell under /<cell name>/... (micro-batched) and
    /<cell name>-unbatched/...; /stats/<cell name> returns and resets the cell's timers."""
    import uvicorn
    from fastapi import FastAPI

    from recbole_lru.serving.app import create_app

    torch.set_num_threads(1)
    root = FastAPI()
    apps = {}
    for name, c in cells.items():
        apps[name] = create_app(c["rec"], batch_window_ms=window_ms)
        root.mount(f"/{name}", apps[name])
        root.mount(f"/{name}-unbatched", create_app(c["rec"], batch_window_ms=None))

    @root.get("/stats/{name}")
    def stats(name: str):
        timer, batcher = cells[name]["rec"].timer, apps[name].state.batcher
        out = {"seconds": dict(timer.seconds), "batches": batcher.batches, "requests": batcher.requests}
        timer.reset()
        batcher.batches = batcher.requests = 0
        return out

    uvicorn.run(root, host="127.0.0.1", port=port, log_level="warning")


class _Client:
    """A keep-alive HTTP/1.1 connection from the standard library: the clients share the server's
    2 cores, so they are kept lean (httpx spends about a millisecond of CPU per request)."""

    def __init__(self, port: int, prefix: str):
        import http.client

        self.conn, self.prefix = http.client.HTTPConnection("127.0.0.1", port, timeout=120), prefix

    def call(self, method: str, path: str, body=None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        headers = {} if body is None else {"Content-Type": "application/json"}
        self.conn.request(method, self.prefix + path, body=data, headers=headers)
        response = self.conn.getresponse()
        payload = response.read()
        assert response.status == 200, payload
        return json.loads(payload)

    def close(self) -> None:
        self.conn.close()


def run_http(cells, tokens, port: int, clients: int, requests: int, budget_s: float, names, batch: int = 1,
             batching: bool = True, rounds: int = 4, one_call: bool = False) -> list:
    """Each client: POST interactions then GET recommendations, or with ``batch`` > 1 the batch
    routes for ``batch`` users of its own (clients * batch <= USERS); ``one_call``: the interactions
    route with ``k``, which answers the recommendations too (one request). Server-side micro-batching
    on (the default) or off (``batching``). The cells take turns, ``rounds`` passes of
    ``requests / rounds`` pairs each in a new random order, so a change in the machine's load falls
    on all of them; the server's own time per pair is read back at the end."""
    rng = np.random.default_rng(2)
    items = [tokens[int(i)] for i in rng.integers(1, len(tokens), requests)]
    lat = {name: [] for name in names}
    wall = dict.fromkeys(names, 0.0)
    stop = time.perf_counter() + budget_s * len(names)  # the whole run's cap
    for name in names:
        _stats(port, name)  # resets the server's timers
    for r in range(rounds):
        for name in (names[i] for i in rng.permutation(len(names))):
            if time.perf_counter() > stop:
                break
            chunk = range(r * requests // rounds, (r + 1) * requests // rounds)
            prefix = f"/{name}" + ("" if batching else "-unbatched")
            wall[name] += _http_pass(port, prefix, clients, chunk, items, batch, lat[name], one_call)
    rows = []
    for name in names:
        server = _stats(port, name)
        row = ({k: cells[name][k] for k in ("model", "history", "store")}
               | {"clients": clients, "batch": batch, "micro_batching": batching, "one_call": one_call}
               | report.summary(lat[name], wall[name]))
        row["interactions_per_s"] *= batch
        # wall time per request pair: the server's model/store work, and the rest (HTTP parsing and
        # routing in Python, JSON, the event loop, waiting to be scheduled on the loaded CPU)
        per_pair = {k: 1e3 * v / len(lat[name]) for k, v in server["seconds"].items()}
        row["server_breakdown_ms_per_pair"] = report.grouped(per_pair) | {
            "http_and_idle": 1e3 * wall[name] / len(lat[name]) - sum(per_pair.values())}
        row["server_requests_per_batch"] = server["requests"] / server["batches"] if server["batches"] else 1.0
        rows.append(row)
        print(f"  http {name} x{clients} batch {batch} micro-batching {batching} one call {one_call}: "
              f"{row['p50_ms']:.2f} ms p50, "
              f"{row['interactions_per_s']:.0f}/s, {row['server_requests_per_batch']:.1f} requests per batch", flush=True)
    return rows


def _http_pass(port, prefix, clients, chunk, items, batch, lat, one_call) -> float:
    """``clients`` threads share the pairs of ``chunk``; appends latencies, returns the wall time."""
    counter, lock, n = iter(chunk), threading.Lock(), len(items)

    def client(w):
        mine = [f"user{w * batch + j}" for j in range(batch)]
        http = _Client(port, prefix)
        try:
            for i in counter:
                t = time.perf_counter()
                if batch == 1:
                    user = f"user{i % USERS}"
                    http.call("POST", f"/users/{user}/interactions" + ("?k=10" if one_call else ""), {"items": [items[i]]})
                    if not one_call:
                        http.call("GET", f"/users/{user}/recommendations?k=10")
                else:
                    events = [{"user": u, "item": items[(i + j) % n]} for j, u in enumerate(mine)]
                    http.call("POST", "/batch/interactions", {"events": events} | ({"k": 10} if one_call else {}))
                    if not one_call:
                        http.call("POST", "/batch/recommendations", {"users": mine, "k": 10})
                with lock:
                    lat.append(time.perf_counter() - t)
        finally:
            http.close()

    threads = [threading.Thread(target=client, args=(w,)) for w in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def _stats(port: int, name: str) -> dict:
    """The cell's server-side timers and batch counts since the last call (a new connection: the
    server closes idle ones after 5 s)."""
    http = _Client(port, "/stats/")
    try:
        return http.call("GET", name)
    finally:
        http.close()
