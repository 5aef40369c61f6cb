"""LRURec incremental inference: ``step()`` on one new item vs recomputing ``full_sort_predict`` over
the whole history, side by side, at history lengths 50 / 200 / 1000 (batch 128, ml-1m-pos4's 3,533
items, hidden 64, one thread, eval mode, no gradients). Writes results/step_benchmark.json.

    python benchmarks/bench_step.py [--repeats 20]
"""
import argparse
import json
import os
import platform
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
from conftest import build_model  # noqa: E402  (builds a model without a dataset on disk)
from recbole.data.interaction import Interaction  # noqa: E402


def timed(fn, repeats):
    """Minimum over repeats: the least disturbed run on a shared machine."""
    fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return min(out)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--out", default="results/step_benchmark.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    n_items, B = 3534, args.batch
    rows = []
    # one model for every history length: nothing in it depends on the length
    model = build_model("LRURec", n_items=n_items, hidden_size=64, inner_size=None, MAX_ITEM_LIST_LENGTH=1000).eval()
    lengths = (50, 200, 1000)
    with torch.no_grad():
        cases = {}
        for L in lengths:
            seq = torch.randint(1, n_items, (B, L))
            lens = torch.full((B,), L)
            state = model.encode_history(seq[:, :-1], lens - 1)
            cases[L] = (seq[:, -1], state, Interaction({"item_id_list": seq, "item_length": lens}))
        # interleave the lengths so that load changes on a shared machine hit all of them alike
        step_t = {L: float("inf") for L in lengths}
        full_t = {L: float("inf") for L in lengths}
        for r in range(args.repeats):
            for L in lengths:
                last, state, inter = cases[L]
                step_t[L] = min(step_t[L], timed(lambda: model.step(last, state), 1))
                if r < 3:  # the full forward is the slow contender: a few repeats suffice
                    full_t[L] = min(full_t[L], timed(lambda: model.full_sort_predict(inter), 1))
        for L in lengths:
            rows.append({"history": L, "step_s": step_t[L], "full_forward_s": full_t[L],
                         "speedup": full_t[L] / step_t[L]})
            print(f"history {L:5d}: step {step_t[L] * 1e3:7.2f} ms   full forward {full_t[L] * 1e3:8.2f} ms   "
                  f"speedup {full_t[L] / step_t[L]:6.1f}x")
    flat = rows[-1]["step_s"] / rows[0]["step_s"]
    out = {"command": "python " + " ".join(sys.argv),
           "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}, 1 thread",
           "batch": B, "n_items": n_items, "points": rows,
           "step_speedup_over_full_forward_L200": rows[1]["speedup"],
           "step_time_ratio_L1000_over_L50": flat}
    print(f"step() at history 200: {rows[1]['speedup']:.1f}x faster than the full forward (target >= 20); "
          f"step time history 1000 / 50: {flat:.2f} (target within 0.8-1.2)")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
