"""Streaming serving: LRURec's O(1) state per user against SASRec recomputing from the stored history.

On a Video-size catalogue (23,715 items, d = 64, random weights: speed does not depend on them),
each request is one user's new interaction followed by that user's top-10 (observe + recommend).
Users start with a stored history of 50, 200 or 1000 items:

* LRURec: the store holds the user's fixed-size state; observe = one ``step``, recommend = one
  scoring of the catalogue from the stored output;
* SASRec (RecBole's, max length = the history length): the store holds the history; recommend
  loads it and re-encodes it, as a transformer server must.

Both use the same store (SQLite, ``synchronous=normal``: an acknowledged write survives a crash of
the process; ``full`` adds an fsync per commit and is measured too, as is Redis). Every in-process
cell is measured interleaved with the others (request i of every cell before request i+1 of any),
so the machine's load falls on all cells alike; the floor is a bare ``model.step()`` + top-k on a
state in memory. HTTP cells go through one real uvicorn server on 127.0.0.1 serving every cell,
with concurrent clients, each request pair being POST interactions + GET recommendations.

    python benchmarks/bench_serving.py --out results/serving.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import torch

import recbole_lru  # noqa: F401  (registers the models)
from recbole_lru.serving import Recommender, load_bundle, save_bundle
from recbole_lru.serving.bundle import _json_config, build_model
from recbole_lru.serving.recompute import RecomputeRecommender

N_ITEMS, HIDDEN, HISTORIES, USERS = 23715, 64, (50, 200, 1000), 32


def model_config(name: str, max_len: int) -> dict:
    from recbole.config import Config

    argv, sys.argv = sys.argv, sys.argv[:1]  # Config reads --key=value from the command line
    try:
        config = Config(model=name, dataset="serving-bench", config_dict={
            "hidden_size": HIDDEN, "inner_size": 4 * HIDDEN if name == "LRURec" else 256, "n_layers": 2,
            "n_heads": 2, "MAX_ITEM_LIST_LENGTH": max_len, "train_neg_sample_args": None, "loss_type": "CE"})
    finally:
        sys.argv = argv
    return _json_config(config)


def build_cells(folder: str, redis_url: str | None, preload: bool):
    """Every (model, history, store) cell's recommender; ``preload`` writes the users' histories."""
    from recbole.model.sequential_recommender.sasrec import SASRec

    bundle_path = os.path.join(folder, "bundle")
    if preload:
        torch.manual_seed(0)
        lru = build_model("LRURec", model_config("LRURec", 50), N_ITEMS + 1)
        tokens = ["[PAD]"] + [f"v{j}" for j in range(1, N_ITEMS + 1)]
        save_bundle("LRURec", model_config("LRURec", 50), lru.state_dict(), tokens, [0] + [1] * N_ITEMS, bundle_path)
    bundle = load_bundle(bundle_path)
    stores = [("sqlite-normal", h) for h in HISTORIES] + [("sqlite-full", 200)]
    if redis_url:
        stores.append(("redis", 200))
    cells, rng = {}, np.random.default_rng(0)
    for store, h in stores:
        for model in ("LRURec", "SASRec"):
            name = f"{model}-{h}-{store}"
            if store == "redis":
                url = f"{redis_url}?prefix=bench-serving"
            else:
                url = f"sqlite:{os.path.join(folder, name + '.sqlite')}?synchronous={store.split('-')[1]}"
            if model == "LRURec":
                rec = Recommender(bundle, store=url)
            else:
                torch.manual_seed(0)
                sasrec = build_model(SASRec, model_config("SASRec", h), len(bundle.tokens)).eval()
                rec = RecomputeRecommender(sasrec, f"SASRec-recompute-{h}", url, bundle.tokens)
            if preload:
                rec.store.clear()
                histories = {f"user{u}": [bundle.tokens[i] for i in rng.integers(1, N_ITEMS + 1, h)]
                             for u in range(USERS)}
                if model == "LRURec":
                    rec.bootstrap(histories, batch_size=8)
                else:
                    rec.bootstrap(histories)
            cells[name] = dict(model=model, history=h, store=store, rec=rec)
    return bundle, cells


def summary(latencies_s: list[float], wall_s: float | None = None) -> dict:
    lat = np.asarray(latencies_s) * 1e3
    out = {"requests": len(lat), "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
           "mean_ms": float(lat.mean())}
    # one client in process: back to back; over HTTP: completed pairs over the wall time
    out["interactions_per_s"] = float(len(lat) / (wall_s if wall_s else lat.sum() / 1e3))
    return out


def _shuffled(cells, rng) -> list:
    # a new order each round: no cell always runs right after a heavy one (on a busy machine the
    # scheduler makes a process pay for the CPU it just used)
    names = list(cells)
    return [names[i] for i in rng.permutation(len(names))]


def _settle() -> None:
    time.sleep(0.002)  # each request starts as a server's does: after waiting for it


def run_in_process(bundle, cells, requests: int, budget_s: float) -> tuple[list, dict]:
    rng = np.random.default_rng(1)
    lat = {name: [] for name in cells}
    floor_lat = []
    model = bundle.model
    with torch.inference_mode():
        floor_state = model.init_state(1)
    for c in cells.values():
        c["rec"].timer.reset()
    start = time.perf_counter()
    for i in range(requests):
        user = f"user{i % USERS}"
        item = bundle.tokens[int(rng.integers(1, N_ITEMS + 1))]
        for name in _shuffled(cells, rng) + ["floor"]:
            _settle()
            t = time.perf_counter()
            if name == "floor":
                with torch.inference_mode():
                    scores, floor_state = model.step(torch.tensor([bundle.token2id[item]]), floor_state)
                    scores.topk(10)
                floor_lat.append(time.perf_counter() - t)
                continue
            cells[name]["rec"].observe(user, item)
            cells[name]["rec"].recommend(user, k=10)
            lat[name].append(time.perf_counter() - t)
        if time.perf_counter() - start > budget_s:
            break
    return _rows(cells, lat), summary(floor_lat)


def run_batched(bundle, cells, batch: int, requests: int, budget_s: float) -> list:
    """Each call: ``batch`` users' new interactions (one batched step) and their top-10 (one scoring
    matmul); latency per call, throughput in interactions (users) per second."""
    rng = np.random.default_rng(3)
    lat = {name: [] for name in cells}
    for c in cells.values():
        c["rec"].timer.reset()
    start = time.perf_counter()
    for i in range(requests):
        users = [f"user{u}" for u in range(batch)]
        items = [bundle.tokens[int(j)] for j in rng.integers(1, N_ITEMS + 1, batch)]
        for name in _shuffled(cells, rng):
            c = cells[name]
            _settle()
            t = time.perf_counter()
            c["rec"].observe_batch(list(zip(users, items)))
            c["rec"].recommend_batch(users, k=10)
            lat[name].append(time.perf_counter() - t)
        if time.perf_counter() - start > budget_s:
            break
    rows = _rows(cells, lat)
    for r in rows:
        r["batch"] = batch
        r["interactions_per_s"] *= batch
    return rows


def _rows(cells, lat) -> list:
    rows = []
    for name, c in cells.items():
        row = {k: c[k] for k in ("model", "history", "store")} | summary(lat[name])
        timer = c["rec"].timer
        row["breakdown_ms_per_request"] = {k: 1e3 * v / len(lat[name]) for k, v in timer.seconds.items()}
        row["breakdown_ms_per_request"]["other"] = row["mean_ms"] - sum(row["breakdown_ms_per_request"].values())
        rows.append(row)
    return rows


def serve_worker(folder: str, redis_url: str | None, port: int) -> None:
    """One uvicorn process serving every cell under /<cell name>/..."""
    import uvicorn
    from fastapi import FastAPI

    from recbole_lru.serving.app import create_app

    torch.set_num_threads(1)
    _, cells = build_cells(folder, redis_url, preload=False)
    root = FastAPI()
    for name, c in cells.items():
        root.mount(f"/{name}", create_app(c["rec"]))
    uvicorn.run(root, host="127.0.0.1", port=port, log_level="warning")


def run_http(cells, tokens, port: int, clients: int, requests: int, budget_s: float, names, batch: int = 1) -> list:
    """Each client: POST interactions then GET recommendations, or with ``batch`` > 1 the batch
    routes for ``batch`` users of its own (clients * batch <= USERS)."""
    import httpx

    rows = []
    for name in names:
        c = cells[name]
        lat, lock, rng = [], threading.Lock(), np.random.default_rng(2)
        items = [tokens[int(i)] for i in rng.integers(1, N_ITEMS + 1, requests)]
        counter = iter(range(requests))
        deadline = time.perf_counter() + budget_s

        def client(w):
            mine = [f"user{w * batch + j}" for j in range(batch)]
            with httpx.Client(base_url=f"http://127.0.0.1:{port}/{name}", timeout=120) as http:
                for i in counter:
                    if time.perf_counter() > deadline:
                        return
                    t = time.perf_counter()
                    if batch == 1:
                        user = f"user{i % USERS}"
                        r = http.post(f"/users/{user}/interactions", json={"items": [items[i]]})
                        assert r.status_code == 200, r.text
                        r = http.get(f"/users/{user}/recommendations", params={"k": 10})
                    else:
                        events = [{"user": u, "item": items[(i + j) % requests]} for j, u in enumerate(mine)]
                        assert http.post("/batch/interactions", json={"events": events}).status_code == 200
                        r = http.post("/batch/recommendations", json={"users": mine, "k": 10})
                    assert r.status_code == 200, r.text
                    with lock:
                        lat.append(time.perf_counter() - t)

        threads = [threading.Thread(target=client, args=(w,)) for w in range(clients)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        row = {k: c[k] for k in ("model", "history", "store")} | {"clients": clients, "batch": batch} | summary(lat, wall)
        row["interactions_per_s"] *= batch
        rows.append(row)
        print(f"  http {name} x{clients} batch {batch}: {row['p50_ms']:.2f} ms p50", flush=True)
    return rows


def machine() -> dict:
    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average_1_5_15": list(os.getloadavg())}


def ratios(in_process, batched, http, http_batched, floor) -> dict:
    def cell(rows, model, h, store="sqlite-normal", clients=None):
        # each list holds one batch size; HTTP lists are matched on their largest client count
        return next(r for r in rows if (r["model"], r["history"], r["store"]) == (model, h, store)
                    and (clients is None or r["clients"] == clients))

    out = {"in_process": {}, "in_process_batched": {}, "http": {}, "http_batched": {}}
    for rows, key in ((in_process, "in_process"), (batched, "in_process_batched"), (http, "http"),
                      (http_batched, "http_batched")):
        if not rows:
            continue
        clients = max(r["clients"] for r in rows) if key.startswith("http") else None
        lru = {h: cell(rows, "LRURec", h, clients=clients) for h in HISTORIES}
        sas = {h: cell(rows, "SASRec", h, clients=clients) for h in HISTORIES}
        out[key] = {
            "lrurec_p50_1000_over_50": lru[1000]["p50_ms"] / lru[50]["p50_ms"],
            "lrurec_over_sasrec_throughput": {h: lru[h]["interactions_per_s"] / sas[h]["interactions_per_s"]
                                              for h in HISTORIES},
        }
    out["in_process"]["lrurec_p50_over_step_topk_floor"] = {
        h: cell(in_process, "LRURec", h)["p50_ms"] / floor["p50_ms"] for h in HISTORIES}
    return out


def plot(result, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for key, style in (("in_process", "-o"), ("in_process_batched", ":^"), ("http", "--s")):
        rows = [r for r in result[key] if r["store"] == "sqlite-normal"]
        if key == "http":
            rows = [r for r in rows if r["clients"] == max(x["clients"] for x in rows)]
        for model in ("LRURec", "SASRec"):
            mine = sorted((r for r in rows if r["model"] == model), key=lambda r: r["history"])
            label = f"{model} ({key.replace('_', '-')}{', per call' if key == 'in_process_batched' else ''})"
            axes[0].plot([r["history"] for r in mine], [r["p50_ms"] for r in mine], style, label=label)
            axes[1].plot([r["history"] for r in mine], [r["interactions_per_s"] for r in mine], style, label=label)
    axes[0].axhline(result["floor_step_topk"]["p50_ms"], color="grey", lw=0.8, label="bare step()+top-k")
    for ax, title in ((axes[0], "p50 latency of observe+recommend (ms)"), (axes[1], "interactions per second")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("stored history length")
        ax.set_title(title)
        ax.set_xticks(HISTORIES, [str(h) for h in HISTORIES])
        ax.legend(fontsize=7)
    fig.suptitle(f"Serving on {N_ITEMS} items, d={HIDDEN}, SQLite store (shared, loaded 2-core CPU)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/serving.json")
    parser.add_argument("--requests", type=int, default=300, help="in-process requests per cell")
    parser.add_argument("--budget_s", type=float, default=240.0, help="time cap of the in-process loop")
    parser.add_argument("--batch", type=int, default=USERS, help="users per call in the batched cells")
    parser.add_argument("--batch_requests", type=int, default=40, help="batched calls per cell")
    parser.add_argument("--http_requests", type=int, default=150, help="HTTP request pairs per cell")
    parser.add_argument("--http_budget_s", type=float, default=30.0, help="time cap per HTTP cell")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--redis", default=os.environ.get("RECBOLE_LRU_TEST_REDIS"),
                        help="redis://HOST:PORT/DB for the Redis cells (default: $RECBOLE_LRU_TEST_REDIS; none: skipped)")
    parser.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker_port", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.worker_port is not None:
        serve_worker(args.folder, args.redis, args.worker_port)
        return 0

    folder = tempfile.mkdtemp(prefix="bench_serving_")
    result = {"command": " ".join(["python", "benchmarks/bench_serving.py"] + sys.argv[1:]),
              "machine_before": machine(),
              "setup": {"n_items": N_ITEMS, "hidden_size": HIDDEN, "users_per_cell": USERS, "k": 10,
                        "lrurec": "2 LRU blocks, state 2x128 complex64 + output 64 float32 per user",
                        "sasrec": "RecBole SASRec, 2 layers, 2 heads, inner 256, max length = history",
                        "stores": "sqlite-normal: WAL, synchronous=NORMAL; sqlite-full: synchronous=FULL "
                                  "(fsync per commit); redis: Lua compare-and-set"}}
    print("preloading histories ...", flush=True)
    bundle, cells = build_cells(folder, args.redis, preload=True)
    print("in-process (interleaved) ...", flush=True)
    result["in_process"], result["floor_step_topk"] = run_in_process(bundle, cells, args.requests, args.budget_s)
    normal = {n: c for n, c in cells.items() if c["store"] == "sqlite-normal"}
    result["in_process_batched"] = run_batched(bundle, normal, args.batch, args.batch_requests, args.budget_s)
    for r in result["in_process"] + result["in_process_batched"]:
        print(f"  {r['model']:7s} h={r['history']:5d} {r['store']:13s} batch {r.get('batch', 1):3d} p50 "
              f"{r['p50_ms']:8.2f} ms p99 {r['p99_ms']:8.2f} ms  {r['interactions_per_s']:8.1f}/s", flush=True)

    # HTTP: one server process for every cell, started on the stores preloaded above
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, os.path.abspath(__file__), "--folder", folder, "--worker_port", str(port)]
    if args.redis:
        cmd += ["--redis", args.redis]
    server = subprocess.Popen(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        import httpx

        while True:
            if server.poll() is not None:
                raise RuntimeError(f"the benchmark's HTTP server exited with {server.returncode}")
            try:
                httpx.get(f"http://127.0.0.1:{port}/LRURec-50-sqlite-normal/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.5)
        names = [n for n, c in cells.items() if c["store"] == "sqlite-normal"]
        print("http ...", flush=True)
        result["http"] = run_http(cells, bundle.tokens, port, args.clients, args.http_requests, args.http_budget_s, names)
        result["http"] += run_http(cells, bundle.tokens, port, 1, args.http_requests, args.http_budget_s,
                                   ["LRURec-200-sqlite-normal", "SASRec-200-sqlite-normal"])
        result["http_batched"] = run_http(cells, bundle.tokens, port, args.clients, args.http_requests // 4,
                                          args.http_budget_s, names, batch=USERS // args.clients)
    finally:
        server.terminate()
        server.wait()
    result["ratios"] = ratios(result["in_process"], result["in_process_batched"], result["http"],
                              result["http_batched"], result["floor_step_topk"])
    result["machine_after"] = machine()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1)
    plot(result, os.path.splitext(args.out)[0] + ".png")
    print(json.dumps(result["ratios"], indent=1))
    for c in cells.values():
        if c["store"] == "redis":
            c["rec"].store.clear()
        c["rec"].close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
