"""Claim: long sequences. One training step per sequence length N (forward + backward, no optimizer
update; cross-entropy over all items at the LAST position, RecBole's prefix-row loss, so the
encoder's growth with N shows instead of the scoring's) for N in 50..4000 at batch 8, and its peak
memory in a fresh subprocess per point (peak RSS above the RSS before the step; big tensors mmap-ed so
freed memory leaves the process); points whose estimated peak exceeds the budget are skipped. Also
the attention layers alone (LinRec vs softmax, N=2000), from results/linear_attention_benchmark.json
when present, else measured here.

    python benchmarks/eff_long.py [--quick] [--out results]
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import REPO, Clock, build_model, log, make_batch, median, ratio  # noqa: E402
from benchmarks.eff_args import DATASETS, POINT_ENV, claim_main  # noqa: E402

CLAIM = "long"
HEADLINE = ["linrec_over_softmax_time_N2000", "linrec_over_softmax_memory_N2000"]


def add_arguments(p):
    p.add_argument("--long-lengths", type=int, nargs="+", default=[50, 200, 1000, 2000, 4000])
    p.add_argument("--long-batch", type=int, default=8)
    p.add_argument("--long-items", type=int, default=DATASETS["ml-1m-pos4"][1])
    p.add_argument("--long-repeats", type=int, default=2)
    p.add_argument("--memory-budget-gb", type=float, default=8.0)
    p.add_argument("--point-timeout", type=float, default=600)
    p.add_argument("--_long-point", nargs=2, metavar=("MODEL", "N"), help=argparse.SUPPRESS)
    p.add_argument("--_attn-point", nargs=3, metavar=("IMPL", "N", "BATCH"), help=argparse.SUPPRESS)


def quick_defaults(args):
    if args.long_lengths == [50, 200, 1000, 2000, 4000]:
        args.long_lengths = [16, 64]
    args.long_batch = min(args.long_batch, 2)
    args.long_items = min(args.long_items, 300)
    args.long_repeats = 1


def run_point(args) -> bool:
    """In a subprocess started by this script: measure one point, print it as JSON."""
    if args._long_point:
        model, n = args._long_point
        print(json.dumps(long_point(model, int(n), args.long_batch, args.long_items + 1, args.hidden, args.heads,
                                    args.long_repeats)))
        return True
    if args._attn_point:
        impl, n, batch = args._attn_point
        print(json.dumps(attention_point(impl, int(n), int(batch))))
        return True
    return False


def _meminfo_gb(field):
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def _rss_kb(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def _reset_peak():
    """Reset the peak RSS (VmHWM) to the current RSS; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def long_point(model_name, N, batch, n_items, hidden, heads, repeats):
    """One (model, N) point in this process: returns time and peak memory of a training step."""
    torch.set_num_threads(1)
    ov = {"hidden_size": hidden}
    if model_name == "LRURec":
        ov.update(train_mode="prefix")
        name = "LRURec"
    elif model_name.startswith("LinRec"):
        ov.update(n_heads=heads, inner_size=4 * hidden, causal=model_name == "LinRec-causal", train_mode="prefix")
        name = "LinRec"
    else:
        ov.update(n_heads=heads, inner_size=4 * hidden, loss_type="CE")
        name = "SASRec"
    model, _ = build_model(name, n_items, MAX_ITEM_LIST_LENGTH=N, **ov)
    model.train()
    g = torch.Generator().manual_seed(4)
    inter = make_batch(np.full(batch, N), N, n_items, g)

    def step():
        for p in model.parameters():
            p.grad = None
        loss = model.calculate_loss(inter)
        loss.backward()

    # memory: the first step, from the RSS just before it (peak reset there where possible)
    gc.collect()
    resettable = _reset_peak()
    base_kb = _rss_kb("VmRSS")
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with Clock() as first:
        step()
    if resettable:
        peak_kb, method = _rss_kb("VmHWM"), "VmHWM after clear_refs"
    else:
        peak_kb, method = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, maxrss_before), "ru_maxrss"
    cpu, wall = [], []
    for _ in range(repeats):
        with Clock() as c:
            step()
        cpu.append(c.cpu)
        wall.append(c.wall)
    return {"status": "ok", "step_cpu_s": median(cpu), "step_wall_s": median(wall), "first_step_cpu_s": first.cpu,
            "peak_mem_mb": (peak_kb - base_kb) / 1024.0, "memory_method": method}


def spawn_long_point(args, model_name, N):
    cmd = [sys.executable, os.path.abspath(__file__), "--_long-point", model_name, str(N),
           "--long-batch", str(args.long_batch), "--hidden", str(args.hidden), "--heads", str(args.heads),
           "--long-repeats", str(args.long_repeats), "--long-items", str(args.long_items)]
    env = dict(os.environ, **POINT_ENV)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.point_timeout)
    except subprocess.TimeoutExpired:
        return {"status": "failed", "reason": f"timed out after {args.point_timeout} s"}
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (proc.stderr or proc.stdout)[-400:]
    return {"status": "failed", "reason": f"exit {proc.returncode}: {tail}"}


def run(args, out, notes, details):
    models = ["LRURec", "LinRec", "LinRec-causal", "SASRec"]
    avail = _meminfo_gb("MemAvailable")
    budget = args.memory_budget_gb if avail is None else min(args.memory_budget_gb, 0.7 * avail)
    points = []
    log(CLAIM, f"long sequences: N in {args.long_lengths}, batch {args.long_batch}, budget {budget:.1f} GB")
    for model_name in models:
        measured = []  # (N, peak MB)
        for N in args.long_lengths:
            est_gb = None
            if measured:
                n0, m0 = measured[-1]
                exponent = 2.0 if model_name == "SASRec" else 1.0
                if len(measured) >= 2 and measured[-2][1] > 0 and m0 > measured[-2][1]:
                    exponent = max(exponent, math.log(m0 / measured[-2][1]) / math.log(n0 / measured[-2][0]))
                est_gb = m0 * (N / n0) ** exponent / 1024
            if est_gb is not None and est_gb > budget:
                p = {"model": model_name, "N": N, "status": "skipped", "estimated_peak_gb": est_gb,
                     "reason": f"estimated peak {est_gb:.1f} GB (from N={measured[-1][0]}) > budget {budget:.1f} GB"}
            else:
                if args.quick:
                    p = long_point(model_name, N, args.long_batch, args.long_items + 1, args.hidden, args.heads,
                                   args.long_repeats)
                else:
                    p = spawn_long_point(args, model_name, N)
                p.update(model=model_name, N=N, estimated_peak_gb=est_gb)
                if p["status"] == "ok":
                    measured.append((N, p["peak_mem_mb"]))
            points.append(p)
            if p["status"] == "ok":
                log(CLAIM, f"  {model_name:13s} N={N:5d} step {p['step_cpu_s']:.3f} s cpu, peak +{p['peak_mem_mb']:.0f} MB")
            else:
                log(CLAIM, f"  {model_name:13s} N={N:5d} {p['status']}: {p.get('reason')}")
    details[CLAIM] = {"batch": args.long_batch, "hidden": args.hidden, "heads": args.heads,
                       "n_items": args.long_items, "budget_gb": budget, "points": points,
                       "loss": "cross-entropy over all items at the last position (prefix regime), no optimizer update"}

    def get(model, N, field):
        for p in points:
            if p["model"] == model and p["N"] == N and p["status"] == "ok":
                return p[field]
        return None

    for other in ("LRURec", "LinRec", "LinRec-causal"):
        tag = other.lower().replace("-", "_")
        for N in args.long_lengths:
            out[f"long_step_time_ratio_{tag}_over_sasrec_N{N}"] = ratio(get(other, N, "step_cpu_s"),
                                                                        get("SASRec", N, "step_cpu_s"))
            out[f"long_memory_ratio_{tag}_over_sasrec_N{N}"] = ratio(get(other, N, "peak_mem_mb"),
                                                                     get("SASRec", N, "peak_mem_mb"))
    plot_long(args, points)

    # the attention layer alone at hidden 128, 8 heads, batch 32: from bench_linear_attention.py if it ran
    path = os.path.join(args.results_dir, "linear_attention_benchmark.json")
    found = False
    if os.path.exists(path):
        try:
            with open(path) as fh:
                la = json.load(fh)
            summ = la.get("summary") or {}
            cfg = la.get("config") or {}
            if summ.get("time_ratio_at_2000") is not None:
                out["linrec_over_softmax_time_N2000"] = summ["time_ratio_at_2000"]
                out["linrec_over_softmax_memory_N2000"] = summ.get("memory_ratio_at_2000")
                out["linrec_causal_over_softmax_time_N2000"] = summ.get("causal_time_ratio_at_2000")
                out["linrec_causal_over_softmax_memory_N2000"] = summ.get("causal_memory_ratio_at_2000")
                details["linear_attention_source"] = {
                    "file": os.path.relpath(path, REPO), "command": la.get("command"),
                    "config": {k: cfg.get(k) for k in ("batch", "hidden", "heads", "mode", "dtype")}}
                found = True
        except (OSError, ValueError) as exc:
            notes["linrec_over_softmax_time_N2000"] = f"{path} unreadable ({exc}); measured here instead"
    if not found:
        measure_attention_layers(args, out, notes, details)


def measure_attention_layers(args, out, notes, details):
    """The attention layers alone (hidden 128, 8 heads, batch 32, N=2000; quick: tiny): RecBole's
    MultiHeadAttention vs the plugin's LinRec attention, forward+backward, memory in subprocesses."""
    N, batch = (512, 2) if args.quick else (2000, 32)
    res = {}
    for impl in ("softmax", "linrec"):
        if args.quick:
            res[impl] = attention_point(impl, N, batch)
        else:
            cmd = [sys.executable, os.path.abspath(__file__), "--_attn-point", impl, str(N), str(batch)]
            env = dict(os.environ, **POINT_ENV)
            env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.point_timeout)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            res[impl] = json.loads(lines[-1]) if lines else {"status": "failed", "reason": proc.stderr[-300:]}
    ok = all(r.get("status") == "ok" for r in res.values())
    out["linrec_over_softmax_time_N2000"] = ratio(res["linrec"].get("step_cpu_s"), res["softmax"].get("step_cpu_s")) if ok else None
    mem = [res[k].get("peak_mem_mb") for k in ("linrec", "softmax")]
    out["linrec_over_softmax_memory_N2000"] = ratio(*mem) if ok and min(mem) > 0 else None
    if ok and min(mem) <= 0:
        notes["linrec_over_softmax_memory_N2000"] = "peak memory too small to measure at this size"
    details["linear_attention_source"] = {"measured_here": True, "N": N, "batch": batch, "points": res}
    note = "results/linear_attention_benchmark.json not found: attention layers measured here"
    if args.quick:
        note += f" at N={N}, batch {batch} (quick)"
    notes["linrec_over_softmax_time_N2000"] = note
    if not ok:
        notes["linrec_over_softmax_time_N2000"] += "; a point failed"


def attention_point(impl, N, batch, hidden=128, heads=8):
    """RecBole's MultiHeadAttention (causal mask, softmax) or the plugin's LinRec attention (the same
    weights, swapped in by ``use_linrec_attention``): forward + backward time and peak memory."""
    from recbole.model.layers import MultiHeadAttention

    from recbole_lru.layers.linear_attention import use_linrec_attention

    torch.set_num_threads(1)
    torch.manual_seed(0)
    holder = torch.nn.ModuleList([MultiHeadAttention(heads, hidden, 0.0, 0.0, 1e-12)])
    if impl == "linrec":
        use_linrec_attention(holder, mask_padding=True, causal=False)
    layer = holder[0]
    x = torch.randn(batch, N, hidden, requires_grad=True)
    if impl == "softmax":
        mask = torch.tril(torch.ones(N, N, dtype=torch.bool)).view(1, 1, N, N).expand(batch, 1, N, N)
        mask = torch.where(mask, 0.0, -10000.0)
    else:
        mask = torch.ones(batch, 1, 1, N, dtype=torch.bool)

    def step():
        x.grad = None
        layer(x, mask).sum().backward()

    gc.collect()
    resettable = _reset_peak()
    base = _rss_kb("VmRSS")
    step()
    peak = _rss_kb("VmHWM") if resettable else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(2):
        with Clock() as c:
            step()
        times.append(c.cpu)
    return {"status": "ok", "step_cpu_s": median(times), "peak_mem_mb": (peak - base) / 1024}


def plot_long(args, points):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for model in dict.fromkeys(p["model"] for p in points):
        ok = [p for p in points if p["model"] == model and p["status"] == "ok"]
        if not ok:
            continue
        xs = [p["N"] for p in ok]
        axes[0].plot(xs, [p["step_cpu_s"] for p in ok], "o-", label=model)
        axes[1].plot(xs, [max(p["peak_mem_mb"], 1e-1) for p in ok], "o-", label=model)
        for p in points:
            if p["model"] == model and p["status"] == "skipped":
                axes[1].annotate(f"{model} N={p['N']} skipped\n(est. {p['estimated_peak_gb']:.0f} GB)",
                                 (p["N"], ok[-1]["peak_mem_mb"]), fontsize=7, ha="right")
    for ax, label in zip(axes, ("training step, CPU seconds (1 thread)", "peak memory above baseline, MB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("sequence length N")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(f"one training step (fwd+bwd, CE at the last position), batch {args.long_batch}, "
                 f"hidden {args.hidden}, {args.long_items} items")
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "long_sequences.png"), dpi=120)
    plt.close(fig)


def markdown(details, fmt):
    lg = details.get(CLAIM)
    if not lg:
        return []
    lines = ["## Long sequences", "",
             f"One training step ({lg['loss']}), batch {lg['batch']}, hidden {lg['hidden']}, {lg['n_items']} items; peak "
             f"memory above the RSS before the step, fresh process per point (`long_sequences.png`); budget "
             f"{lg['budget_gb']:.1f} GB.", "", "| model | N | step (s, cpu) | peak memory (MB) | status |", "|---|---|---|---|---|"]
    for p in lg["points"]:
        lines.append(f"| {p['model']} | {p['N']} | {fmt(p.get('step_cpu_s'))} | {fmt(p.get('peak_mem_mb'), '{:.0f}')} | "
                     f"{p['status']}{': ' + p['reason'] if p.get('reason') else ''} |")
    src = details.get("linear_attention_source", {})
    lines += ["", f"Attention layer alone (LinRec vs softmax): {'from ' + src['file'] if src.get('file') else 'measured here'}"]
    return lines + [""]


if __name__ == "__main__":
    sys.exit(claim_main(sys.modules[__name__]))
