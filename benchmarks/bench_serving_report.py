"""Reporting for benchmarks/bench_serving.py: latency summaries and breakdowns, the machine and
commit, the LRURec / SASRec ratios and the plot."""
from __future__ import annotations

import os
import platform
import subprocess

import numpy as np
import torch


def git(*args) -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    return subprocess.run(["git", *args], cwd=here, capture_output=True, text=True).stdout.strip()


def summary(latencies_s: list[float], wall_s: float | None = None) -> dict:
    lat = np.asarray(latencies_s) * 1e3
    out = {"requests": len(lat), "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
           "mean_ms": float(lat.mean())}
    # one client in process: back to back; over HTTP: completed pairs over the wall time
    out["interactions_per_s"] = float(len(lat) / (wall_s if wall_s else lat.sum() / 1e3))
    if not wall_s:  # in process, the typical request's rate too: the mean is at the mercy of the
        out["interactions_per_s_at_p50"] = 1e3 / out["p50_ms"]  # other jobs' bursts on this machine
    return out


GROUPS = {"store": ("store_load", "store_commit"), "state_bytes": ("decode", "encode"), "step": ("step",),
          "encode_history": ("encode_history",), "scoring": ("score",), "mask_topk": ("mask_topk",)}


def grouped(breakdown: dict) -> dict:
    """Timer phases -> store, state (de)serialisation, step (LRURec) or re-encoding (SASRec),
    scoring, masking + top-k, and the rest (Python glue, token mapping)."""
    out = {g: sum(breakdown.get(p, 0.0) for p in phases) for g, phases in GROUPS.items()}
    out["other"] = sum(breakdown.values()) - sum(out.values())
    return out


def machine() -> dict:
    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average_1_5_15": list(os.getloadavg())}


def ratios(result: dict, clients: int) -> dict:
    def cell(rows, model, h, **match):
        return next(r for r in rows if (r["model"], r["history"], r["store"]) == (model, h, "sqlite-normal")
                    and all(r.get(k) == v for k, v in match.items()))

    histories = result["setup"]["histories"]
    out = {}
    for key, match in (("in_process", {}), ("in_process_batched", {}), ("in_process_batched_one_call", {}),
                       ("http", {"clients": clients, "one_call": False}),
                       ("http_batched", {"clients": clients, "one_call": False})):
        rows = result.get(key)
        if not rows:
            continue
        lru = {h: cell(rows, "LRURec", h, **match) for h in histories}
        sas = {h: cell(rows, "SASRec", h, **match) for h in histories}
        out[key] = {
            "lrurec_p50_1000_over_50": lru[1000]["p50_ms"] / lru[50]["p50_ms"],
            "lrurec_over_sasrec_throughput": {h: lru[h]["interactions_per_s"] / sas[h]["interactions_per_s"]
                                              for h in histories},
        }
        if key.startswith("in_process"):
            out[key]["lrurec_over_sasrec_throughput_at_p50"] = {
                h: lru[h]["interactions_per_s_at_p50"] / sas[h]["interactions_per_s_at_p50"] for h in histories}
    sweep = result.get("in_process_batch_sweep") or []
    if sweep:  # every batch size at history 200, the main cells' 32 included
        rows = sweep + [r for r in result["in_process_batched"] if r["history"] == 200]
        out["in_process_batch_sweep"] = {
            f"lrurec_over_sasrec_throughput_200_by_batch{'_at_p50' if p50 else ''}": {
                b: cell(rows, "LRURec", 200, batch=b)[f"interactions_per_s{'_at_p50' if p50 else ''}"]
                / cell(rows, "SASRec", 200, batch=b)[f"interactions_per_s{'_at_p50' if p50 else ''}"]
                for b in sorted({r["batch"] for r in rows})} for p50 in (False, True)}
    # at history 200: every client count (one request per user) and every batch-route size
    for key, field in (("http", "clients"), ("http_unbatched", "clients"), ("http_batched", "batch"),
                       ("http_one_call", "batch")):
        rows = result.get(key) or []
        out.setdefault(key, {})[f"lrurec_over_sasrec_throughput_200_by_{field}"] = {
            n: cell(rows, "LRURec", 200, **{field: n})["interactions_per_s"]
            / cell(rows, "SASRec", 200, **{field: n})["interactions_per_s"]
            for n in sorted({r[field] for r in rows if r["history"] == 200})}
    for floor in ("floor_step_topk", "floor_fast_step_topk"):
        out["in_process"][f"lrurec_p50_over_{floor[6:]}_floor"] = {
            h: cell(result["in_process"], "LRURec", h)["p50_ms"] / result[floor]["p50_ms"] for h in histories}
    return out


def plot(result, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    setup = result["setup"]
    histories = setup["histories"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for key, style in (("in_process", "-o"), ("in_process_batched", ":^"), ("http", "--s")):
        rows = [r for r in result[key] if r["store"] == "sqlite-normal"]
        if key == "http":
            rows = [r for r in rows if r["clients"] == setup["http_clients"]]
        for model in ("LRURec", "SASRec"):
            mine = sorted((r for r in rows if r["model"] == model), key=lambda r: r["history"])
            label = f"{model} ({key.replace('_', '-')}{', per call' if key == 'in_process_batched' else ''})"
            axes[0].plot([r["history"] for r in mine], [r["p50_ms"] for r in mine], style, label=label)
            axes[1].plot([r["history"] for r in mine], [r["interactions_per_s"] for r in mine], style, label=label)
    axes[0].axhline(result["floor_step_topk"]["p50_ms"], color="grey", lw=0.8, label="bare model.step()+top-k")
    axes[0].axhline(result["floor_fast_step_topk"]["p50_ms"], color="grey", ls=":", lw=0.8,
                    label="served step+top-k, no store")
    for ax, title in ((axes[0], "p50 latency of observe+recommend (ms)"), (axes[1], "interactions per second")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("stored history length")
        ax.set_title(title)
        ax.set_xticks(histories, [str(h) for h in histories])
        ax.legend(fontsize=7)
    fig.suptitle(f"Serving on {setup['n_items']} items, d={setup['hidden_size']}, SQLite store, HTTP with "
                 f"{setup['http_clients']} clients and micro-batching (shared, loaded 2-core CPU)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def table(result: dict) -> str:
    """The README's table: one line per (mode, history), LRURec beside SASRec.

    ``python benchmarks/bench_serving_report.py results/serving.json`` prints it."""
    def label(key, r):
        if key == "in_process":
            return "in process, one request" if r["store"] == "sqlite-normal" else f"in process, {r['store']}"
        if key.startswith("in_process_batch"):
            return f"in process, {r['batch']} users per call" + (", one call" if r.get("one_call") else "")
        if r["batch"] > 1:
            return f"HTTP batch routes, {r['clients']} client(s) x {r['batch']} users" + (
                ", one request" if r.get("one_call") else "")
        how = "micro-batched" if r["micro_batching"] else "one request at a time"
        return f"HTTP, {r['clients']} client(s), {how}" + (", one request per event" if r.get("one_call") else "")

    lines = ["| mode | history | LRURec p50 / p99 (ms) | LRURec interactions/s | SASRec p50 / p99 (ms) | "
             "SASRec interactions/s | LRURec / SASRec throughput |", "|---|---:|---:|---:|---:|---:|---:|"]
    keys = ("in_process", "in_process_batched", "in_process_batched_one_call", "in_process_batch_sweep", "http",
            "http_unbatched", "http_batched", "http_one_call")
    for key in keys:
        rows = result.get(key) or []
        for lru in (r for r in rows if r["model"] == "LRURec"):
            match = ("history", "store", "clients", "batch", "micro_batching", "one_call")
            sas = next(r for r in rows if r["model"] == "SASRec" and all(r.get(m) == lru.get(m) for m in match))
            ratio = lru["interactions_per_s"] / sas["interactions_per_s"]
            lines.append(f"| {label(key, lru)} | {lru['history']} | {lru['p50_ms']:.1f} / {lru['p99_ms']:.0f} | "
                         f"{lru['interactions_per_s']:.0f} | {sas['p50_ms']:.1f} / {sas['p99_ms']:.0f} | "
                         f"{sas['interactions_per_s']:.0f} | **{ratio:.1f}x** |")
    return "\n".join(lines)


if __name__ == "__main__":
    import json
    import sys

    with open(sys.argv[1]) as fh:
        print(table(json.load(fh)))
