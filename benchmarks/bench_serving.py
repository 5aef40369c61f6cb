"""Streaming serving: LRURec's O(1) state per user against SASRec recomputing from the stored history.

On a Video-size catalogue (23,715 items, d = 64, random weights: speed does not depend on them),
each request is one user's new interaction followed by that user's top-10 (observe + recommend).
Users start with a stored history of 50, 200 or 1000 items:

* LRURec: the store holds the user's fixed-size state; observe = one ``step``, recommend = one
  scoring of the catalogue from the stored output;
* SASRec (RecBole's, max length = the history length): the store holds the history; recommend
  loads it and re-encodes it, as a transformer server must.

Everything but "state step" vs "re-encode the history" is shared (recbole_lru.serving.core): the
store (SQLite, ``synchronous=normal``: an acknowledged write survives a crash of the process;
``full`` adds an fsync per commit and is measured too, as is Redis), compare-and-set writes,
scoring + top-k and the HTTP app with its micro-batching. Every in-process cell is measured
interleaved with the others (request i of every cell before request i+1 of any), so the machine's
load falls on all cells alike. Two floors run a state in memory with no store: the model's own
``step()`` + top-k, and the served step + scorer. HTTP cells go through one real uvicorn server on
127.0.0.1 serving every cell, micro-batched (and, at history 200, also one request at a time),
with concurrent clients taking turns cell by cell; a request pair is POST interactions + GET
recommendations (or the batch routes for 8 or 32 users). "One call" cells use the combined forms
(``observe_and_recommend_batch`` in process, the interactions routes with ``k`` over HTTP), which
answer the recommendations after the new events with one store read / one request.

    python benchmarks/bench_serving.py --out results/serving.json
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import torch

import recbole_lru  # noqa: F401  (registers the models)
from recbole_lru.serving import Recommender, load_bundle, save_bundle
from recbole_lru.serving.bundle import _json_config, build_model
from recbole_lru.serving.engine import make_engine
from recbole_lru.serving.recompute import RecomputeRecommender

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_serving_http as http_cells  # noqa: E402
import bench_serving_report as report  # noqa: E402

N_ITEMS, HIDDEN, HISTORIES, USERS = 23715, 64, (50, 200, 1000), http_cells.USERS
SWEEP = (8, 64, 128)  # users per call of the batch-size sweep at history 200 (32 is the main cells')


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
                             for u in range(max(USERS, *SWEEP) if h == 200 else USERS)}
                if model == "LRURec":
                    rec.bootstrap(histories, batch_size=8)
                else:
                    rec.bootstrap(histories)
            cells[name] = dict(model=model, history=h, store=store, rec=rec)
    return bundle, cells


def _shuffled(cells, rng) -> list:
    # a new order each round: no cell always runs right after a heavy one (on a busy machine the
    # scheduler makes a process pay for the CPU it just used)
    names = list(cells)
    return [names[i] for i in rng.permutation(len(names))]


def _settle() -> None:
    time.sleep(0.002)  # each request starts as a server's does: after waiting for it


def run_in_process(bundle, cells, requests: int, budget_s: float) -> tuple[list, dict, dict]:
    rng = np.random.default_rng(1)
    lat = {name: [] for name in cells}
    floors = {"floor": [], "floor_fast": []}
    model, engine = bundle.model, make_engine(bundle)
    with torch.inference_mode():
        state = {"floor": model.init_state(1), "floor_fast": engine.init_state(1)}
    for c in cells.values():
        c["rec"].timer.reset()
    start = time.perf_counter()
    for i in range(requests):
        user = f"user{i % USERS}"
        item = bundle.tokens[int(rng.integers(1, N_ITEMS + 1))]
        for name in _shuffled(cells, rng) + list(floors):
            _settle()
            t = time.perf_counter()
            if name in floors:  # a state in memory, no store: what a request costs at the least
                ids = torch.tensor([bundle.token2id[item]])
                with torch.inference_mode():
                    if name == "floor":
                        scores, state[name] = model.step(ids, state[name])
                        scores.topk(10)
                    else:
                        hidden, state[name] = engine.advance(ids, state[name])
                        engine.scorer.top_k(engine.scorer.scores(hidden), None, 10)
                floors[name].append(time.perf_counter() - t)
                continue
            cells[name]["rec"].observe(user, item)
            cells[name]["rec"].recommend(user, k=10)
            lat[name].append(time.perf_counter() - t)
        if time.perf_counter() - start > budget_s:
            break
    return _rows(cells, lat), report.summary(floors["floor"]), report.summary(floors["floor_fast"])


def run_batched(bundle, cells, batch: int, requests: int, budget_s: float, one_call: bool = False) -> list:
    """Each call: ``batch`` users' new interactions (one batched step) and their top-10 (one scoring
    matmul), as two calls or, with ``one_call``, one ``observe_and_recommend_batch`` (one store
    read); latency per call, throughput in interactions (users) per second."""
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
            if one_call:
                c["rec"].observe_and_recommend_batch(list(zip(users, items)), k=10)
            else:
                c["rec"].observe_batch(list(zip(users, items)))
                c["rec"].recommend_batch(users, k=10)
            lat[name].append(time.perf_counter() - t)
        if time.perf_counter() - start > budget_s:
            break
    rows = _rows(cells, lat)
    for r in rows:
        r["batch"], r["one_call"] = batch, one_call
        r["interactions_per_s"] *= batch
        r["interactions_per_s_at_p50"] *= batch
    return rows


def _rows(cells, lat) -> list:
    rows = []
    for name, c in cells.items():
        row = {k: c[k] for k in ("model", "history", "store")} | report.summary(lat[name])
        timer = c["rec"].timer
        row["breakdown_ms_per_request"] = {k: 1e3 * v / len(lat[name]) for k, v in timer.seconds.items()}
        row["breakdown_ms_per_request"]["other"] = row["mean_ms"] - sum(row["breakdown_ms_per_request"].values())
        row["breakdown_groups_ms_per_request"] = report.grouped(row["breakdown_ms_per_request"])
        rows.append(row)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/serving.json")
    parser.add_argument("--requests", type=int, default=300, help="in-process requests per cell")
    parser.add_argument("--budget_s", type=float, default=240.0, help="time cap of the in-process loop")
    parser.add_argument("--batch", type=int, default=USERS, help="users per call in the batched cells")
    parser.add_argument("--batch_requests", type=int, default=80, help="batched calls per cell")
    parser.add_argument("--http_requests", type=int, default=150, help="HTTP request pairs per cell")
    parser.add_argument("--http_budget_s", type=float, default=30.0, help="time cap per HTTP cell")
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients of every cell")
    parser.add_argument("--many_clients", type=int, default=16, help="concurrent HTTP clients of the extra history-200 cells")
    parser.add_argument("--batch_window_ms", type=float, default=0.0, help="the server's micro-batching window")
    parser.add_argument("--redis", default=os.environ.get("RECBOLE_LRU_TEST_REDIS"),
                        help="redis://HOST:PORT/DB for the Redis cells (default: $RECBOLE_LRU_TEST_REDIS; none: skipped)")
    parser.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker_port", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.worker_port is not None:  # the HTTP server of the HTTP cells (started by main)
        http_cells.serve_worker(build_cells(args.folder, args.redis, preload=False)[1], args.worker_port,
                                args.batch_window_ms)
        return 0

    folder = tempfile.mkdtemp(prefix="bench_serving_")
    result = {"command": " ".join(["python", "benchmarks/bench_serving.py"] + sys.argv[1:]),
              "commit": report.git("rev-parse", "HEAD"), "uncommitted_changes": report.git(
                  "status", "--porcelain", "--", "recbole_lru/serving", "recbole_lru/serve.py", "benchmarks/bench_serving*"),
              "machine_before": report.machine(),
              "setup": {"n_items": N_ITEMS, "hidden_size": HIDDEN, "users_per_cell": USERS, "k": 10,
                        "batch_sweep_at_200": list(SWEEP),
                        "lrurec": "2 LRU blocks, state 2x128 complex64 + output 64 float32 per user",
                        "sasrec": "RecBole SASRec, 2 layers, 2 heads, inner 256, max length = history",
                        "stores": "sqlite-normal: WAL, synchronous=NORMAL; sqlite-full: synchronous=FULL "
                                  "(fsync per commit); redis: Lua compare-and-set",
                        "http_clients": args.clients, "histories": list(HISTORIES), "batch_window_ms": args.batch_window_ms,
                        "lrurec_step": "precomputed inference step (recbole_lru.serving.fast_step); the "
                                       "floor_step_topk floor runs the model's own step()"}}
    print("preloading histories ...", flush=True)
    bundle, cells = build_cells(folder, args.redis, preload=True)
    print("in-process (interleaved) ...", flush=True)
    result["in_process"], result["floor_step_topk"], result["floor_fast_step_topk"] = run_in_process(
        bundle, cells, args.requests, args.budget_s)
    normal = {n: c for n, c in cells.items() if c["store"] == "sqlite-normal"}
    result["in_process_batched"] = run_batched(bundle, normal, args.batch, args.batch_requests, args.budget_s)
    result["in_process_batched_one_call"] = run_batched(bundle, normal, args.batch, args.batch_requests,
                                                        args.budget_s, one_call=True)
    # how throughput grows with the users per call (a loaded micro-batching server forms such batches)
    at_200 = {n: c for n, c in normal.items() if c["history"] == 200}
    result["in_process_batch_sweep"] = [r for b in SWEEP for r in run_batched(
        bundle, at_200, b, args.batch_requests, args.budget_s)]
    for r in (result["in_process"] + result["in_process_batched"] + result["in_process_batched_one_call"]
              + result["in_process_batch_sweep"]):
        print(f"  {r['model']:7s} h={r['history']:5d} {r['store']:13s} batch {r.get('batch', 1):3d}"
              f"{' one call' if r.get('one_call') else ''} p50 "
              f"{r['p50_ms']:8.2f} ms p99 {r['p99_ms']:8.2f} ms  {r['interactions_per_s']:8.1f}/s", flush=True)

    # HTTP: one server process for every cell, started on the stores preloaded above
    cmd = [sys.executable, os.path.abspath(__file__), "--folder", folder, "--batch_window_ms", str(args.batch_window_ms)]
    with http_cells.server(cmd + (["--redis", args.redis] if args.redis else []), "LRURec-50-sqlite-normal") as port:
        names = [n for n, c in cells.items() if c["store"] == "sqlite-normal"]
        print("http ...", flush=True)
        pair = ["LRURec-200-sqlite-normal", "SASRec-200-sqlite-normal"]
        http = functools.partial(http_cells.run_http, cells, bundle.tokens, port, budget_s=args.http_budget_s)
        result["http"] = http(clients=args.clients, requests=args.http_requests, names=names)
        result["http"] += (http(clients=1, requests=args.http_requests, names=pair)
                           + http(clients=args.many_clients, requests=2 * args.http_requests, names=pair))
        result["http_unbatched"] = [r for n in (args.clients, args.many_clients) for r in http(
            clients=n, requests=args.http_requests * (1 + (n == args.many_clients)), names=pair, batching=False)]
        result["http_batched"] = http(clients=args.clients, requests=args.http_requests // 4, names=names,
                                      batch=USERS // args.clients)
        # one client sending every user's events in one request (a gateway that gathers them)
        result["http_batched"] += http(clients=1, requests=args.http_requests // 4, names=pair, batch=USERS)
        # the interactions routes with k: one request per user's event (or per batch), answered with
        # the recommendations after it
        result["http_one_call"] = (http(clients=args.clients, requests=args.http_requests, names=pair, one_call=True)
                                   + http(clients=1, requests=args.http_requests // 4, names=pair, batch=USERS,
                                          one_call=True))
    result["ratios"] = report.ratios(result, args.clients)
    result["machine_after"] = report.machine()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1)
    report.plot(result, os.path.splitext(args.out)[0] + ".png")
    print(json.dumps(result["ratios"], indent=1))
    for c in cells.values():
        if c["store"] == "redis":
            c["rec"].store.clear()
        c["rec"].close()
    shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
