"""LinRec attention vs RecBole's softmax MultiHeadAttention: forward+backward time and peak memory.

Claim under test (LinRec paper): on long sequences linear attention needs about 1/3 of the time
and memory of dot-product attention, and grows linearly in N.

Contenders (one attention sublayer each: projections, attention, dense, residual, LayerNorm):
  softmax        recbole.model.layers.MultiHeadAttention, given SASRec's (B, 1, N, N) causal mask
  linrec         LinRecMultiHeadAttention, padding mask on, non-causal (the LinRec paper's setting)
  linrec_causal  the same with causal=True (chunked prefix form)

Setup: hidden 128, 8 heads, batch 32, float32, training mode with every dropout probability 0,
so both sides measure attention itself (RecBole's dropout on the attention probabilities would
add two more N x N tensors to the softmax side). Sequences are right-padded with random real
lengths in [N/2, N]. One thread (torch.set_num_threads(1)). Autograd anomaly mode, which
RecBole's sine.py switches on at import, is switched off.

Method: every (contender, N) point runs in a fresh subprocess (this script with --point) whose
environment fixes the allocator's behaviour, because glibc's malloc otherwise decides what both
measures see: by default tensors above its dynamic mmap threshold (at most 32 MiB) get fresh,
page-faulted memory on every allocation while smaller ones are recycled from the heap, where
freed memory stays resident, so a doubling of N that crosses 32 MiB per tensor (here between
N=2000 and N=4000) changes the allocator, not the attention. Instead:
  MALLOC_MMAP_THRESHOLD_=65536  every tensor of 64 KiB or more is its own mapping, returned to
                                the system when freed: resident memory follows the live tensors
                                and every size is allocated the same way (fresh pages);
  THP_MEM_ALLOC_ENABLE=1        PyTorch asks for transparent huge pages on tensors of 2 MiB or
                                more, so those fresh pages fault in 2 MiB at a time.
(Reusing glibc's heap for everything, MALLOC_MMAP_MAX_=0, was tried: softmax at N=2000 was
then killed for lack of memory, most likely from heap fragmentation around its 4 GB matrices.)
Time: CPU time of the process (time.process_time: user + system, so page faults count), not
wall time, because the machine is shared and wall time swings with the neighbours' load; after
a tiny pass on N=8 (one-time lazy initialisation) and one full-size warm-up pass, the minimum
over --repeats forward+backward passes (fewer once 60 s have passed, at least one; up to twice
as many while under 5 s). Wall times are kept in the JSON.
Peak memory: after imports, the tiny pass (its ~40 MB of one-time buffers would otherwise be
charged to every point) and the creation of the module and the inputs (x, mask, output
gradient), the process's peak-RSS counter is reset to its current RSS (writing 5 to
/proc/self/clear_refs), which is the baseline; peak = VmHWM after all passes - baseline, the
analogue of torch.cuda.max_memory_allocated. Where clear_refs is not writable, ru_maxrss before
and after is used instead.
Points whose estimated peak exceeds the memory budget (default: 16 GB or 70% of available
memory, whichever is smaller) are not run and are recorded as skipped with the estimate.

    python benchmarks/bench_linear_attention.py            # full run, writes results/
    python benchmarks/bench_linear_attention.py --quick    # smoke run (small), prints only
"""
import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONTENDERS = ("softmax", "linrec", "linrec_causal")
FULL_LENGTHS = (50, 200, 1000, 2000, 4000)
QUICK_LENGTHS = (50, 200)


# --------------------------------------------------------------------------- one point
def _rss_kb(field):
    with open("/proc/self/status") as fh:
        return int(re.search(rf"{field}:\s+(\d+)", fh.read()).group(1))


def _reset_peak():
    """Reset the peak-RSS counter; returns the baseline in KiB and the method used."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return _rss_kb("VmRSS"), "clear_refs"
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "ru_maxrss"


def _peak(method):
    if method == "clear_refs":
        return _rss_kb("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_point(impl, n, batch, hidden, heads, repeats, seed=0):
    import torch

    sys.path.insert(0, REPO)
    from recbole.model.layers import MultiHeadAttention

    from recbole_lru.layers.linear_attention import LinRecMultiHeadAttention

    torch.set_num_threads(1)
    torch.autograd.set_detect_anomaly(False)
    torch.manual_seed(seed)

    if impl == "softmax":
        module = MultiHeadAttention(heads, hidden, 0.0, 0.0, 1e-12)
    else:
        module = LinRecMultiHeadAttention(
            heads, hidden, 0.0, 0.0, 1e-12, causal=(impl == "linrec_causal")
        )
    module.train()

    def make_inputs(length):
        lengths = torch.randint(length // 2 + 1, length + 1, (batch,))
        lengths[0] = length
        real = torch.arange(length)[None, :] < lengths[:, None]  # [B N]
        if impl == "softmax":
            causal = real[:, None, None, :].expand(-1, 1, length, -1).tril()
            mask = torch.where(causal, 0.0, -10000.0)  # [B 1 N N], as SASRec builds it
        else:
            mask = real[:, None, None, :]  # [B 1 1 N]: all LinRec needs
        x = torch.randn(batch, length, hidden, requires_grad=True)
        return x, mask, torch.randn(batch, length, hidden)

    def step(x, attention_mask, grad_out):
        x.grad = None
        module.zero_grad(set_to_none=True)
        out = module(x, attention_mask)
        out.backward(grad_out)

    # one-time lazy initialisation (autograd engine, BLAS buffers) on a tiny input
    step(*make_inputs(min(n, 8)))
    inputs = make_inputs(n)

    baseline_kb, method = _reset_peak()
    step(*inputs)  # warm-up at full size (inside the measured peak, like every pass)
    times, walls = [], []
    start = time.perf_counter()
    while True:  # `repeats` passes (fewer past 60 s, at least one), up to 2x within 5 s
        elapsed = time.perf_counter() - start
        if times and not (len(times) < repeats and elapsed < 60) and not (
            len(times) < 2 * repeats and elapsed < 5
        ):
            break
        t0, c0 = time.perf_counter(), time.process_time()
        step(*inputs)
        times.append(time.process_time() - c0)
        walls.append(time.perf_counter() - t0)
    return {
        "impl": impl,
        "N": n,
        "status": "ok",
        "time_s": min(times),
        "times_s": times,
        "wall_s": walls,
        "peak_mem_mb": (_peak(method) - baseline_kb) / 1024,
        "memory_method": method,
    }


# --------------------------------------------------------------------------- driver
def estimate_bytes(impl, n, batch, hidden, heads):
    """Rough peak above the baseline, fitted to measured points (N x N terms dominate softmax)."""
    linear = 4 * batch * n * hidden * 24  # projections, heads, features, grads of all of them
    if impl == "softmax":
        return linear + 4 * batch * heads * n * n * 3  # scores, probs, their gradients
    return linear


def available_bytes():
    try:
        with open("/proc/meminfo") as fh:
            return int(re.search(r"MemAvailable:\s+(\d+)", fh.read()).group(1)) * 1024
    except (OSError, AttributeError):
        return None


def machine():
    import torch

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = re.search(r"model name\s*:\s*(.*)", fh.read()).group(1)
    except (OSError, AttributeError):
        pass
    total = None
    try:
        with open("/proc/meminfo") as fh:
            total = int(re.search(r"MemTotal:\s+(\d+)", fh.read()).group(1)) // 1024
    except (OSError, AttributeError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads_used": 1,
        "memory_total_mb": total,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


POINT_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "THP_MEM_ALLOC_ENABLE": "1",
             "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def spawn_point(impl, n, args):
    cmd = [
        sys.executable, os.path.abspath(__file__), "--point", impl, str(n),
        "--batch", str(args.batch), "--hidden", str(args.hidden), "--heads", str(args.heads),
        "--repeats", str(args.repeats),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO,
                              env=dict(os.environ, **POINT_ENV), timeout=args.point_timeout)
    except subprocess.TimeoutExpired:
        return {"impl": impl, "N": n, "status": "failed",
                "reason": f"exceeded {args.point_timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {"impl": impl, "N": n, "status": "failed",
            "reason": f"exit {proc.returncode}: {proc.stderr.strip()[-500:]}"}


def fmt(value, unit):
    if value is None:
        return "skipped"
    if unit == "s":
        return f"{value:.3f} s"
    return f"{value:.1f} MB" if value < 100 else f"{value:.0f} MB"


def ratio(points, field, num, den, n):
    a = points.get((num, n), {}).get(field)
    b = points.get((den, n), {}).get(field)
    return None if a is None or b is None or b == 0 else a / b


def render_markdown(result):
    pts = {(p["impl"], p["N"]): p for p in result["points"]}
    cfg = result["config"]
    lines = [
        "# LinRec attention vs softmax attention (forward + backward, CPU)",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores "
        f"(1 thread used), {result['machine']['memory_total_mb']} MB RAM, "
        f"torch {result['machine']['torch']}  ",
        f"Setup: batch {cfg['batch']}, hidden {cfg['hidden']}, {cfg['heads']} heads, float32, "
        "training mode, dropout 0; one attention sublayer (projections, attention, dense, "
        "residual, LayerNorm). Each point runs in a fresh process with every tensor of 64 KiB or "
        "more in its own mapping (MALLOC_MMAP_THRESHOLD_=65536) on transparent huge pages "
        "(THP_MEM_ALLOC_ENABLE=1); time = min CPU time (user + system) over forward+backward "
        "passes after a warm-up; "
        "memory = peak RSS above the baseline taken after the inputs were built, which with "
        "that setting follows the live tensors. See the script's docstring.",
        "",
        "| N | softmax time | LinRec time | LinRec causal time | softmax mem | LinRec mem "
        "| LinRec causal mem | LinRec/softmax time | LinRec/softmax mem |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n in cfg["lengths"]:
        row = [str(n)]
        for impl in CONTENDERS:
            row.append(fmt(pts.get((impl, n), {}).get("time_s"), "s"))
        for impl in CONTENDERS:
            row.append(fmt(pts.get((impl, n), {}).get("peak_mem_mb"), "MB"))
        for field in ("time_s", "peak_mem_mb"):
            r = ratio(pts, field, "linrec", "softmax", n)
            row.append("n/a" if r is None else f"{r:.3f}")
        lines.append("| " + " | ".join(row) + " |")
    skipped = [p for p in result["points"] if p["status"] != "ok"]
    if skipped:
        lines += ["", "Not run:"]
        lines += [f"- {p['impl']} N={p['N']}: {p['status']} ({p['reason']})" for p in skipped]
    lines += ["", "Targets:"]
    for key, label, target in (
        ("time_ratio_at_2000", "LinRec/softmax time at N=2000", "<= 1/3"),
        ("memory_ratio_at_2000", "LinRec/softmax memory at N=2000", "<= 1/5"),
        ("linrec_time_growth_4000_over_2000", "LinRec time N=4000 / N=2000", "<= 2.3"),
        ("linrec_memory_growth_4000_over_2000", "LinRec memory N=4000 / N=2000", "(linear: 2)"),
        ("linrec_causal_time_growth_4000_over_2000", "LinRec causal time N=4000 / N=2000",
         "(linear: 2)"),
    ):
        value = result["summary"].get(key)
        lines.append(f"- {label}: {'n/a' if value is None else f'{value:.3f}'} (target {target})")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run, prints only")
    parser.add_argument("--lengths", type=int, nargs="+")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--mem-budget-gb", type=float,
                        help="skip points estimated above this (default min(16, 0.7 x available))")
    parser.add_argument("--point-timeout", type=float, default=1800)
    parser.add_argument("--out-dir", default=os.path.join(REPO, "results"))
    parser.add_argument("--write", action="store_true", help="write result files in --quick mode")
    parser.add_argument("--point", nargs=2, metavar=("IMPL", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.batch is None:
        args.batch = 4 if args.quick else 32
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3

    if args.point:
        impl, n = args.point[0], int(args.point[1])
        print(json.dumps(run_point(impl, n, args.batch, args.hidden, args.heads, args.repeats)))
        return

    lengths = args.lengths or (QUICK_LENGTHS if args.quick else FULL_LENGTHS)
    avail = available_bytes()
    budget = args.mem_budget_gb * 2**30 if args.mem_budget_gb else min(
        16 * 2**30, 0.7 * avail if avail else 16 * 2**30
    )
    points = []
    for n in lengths:
        for impl in CONTENDERS:
            est = estimate_bytes(impl, n, args.batch, args.hidden, args.heads)
            if est > budget:
                point = {"impl": impl, "N": n, "status": "skipped",
                         "reason": f"estimated peak {est / 2**30:.1f} GB > budget "
                                   f"{budget / 2**30:.1f} GB",
                         "estimated_mem_gb": est / 2**30}
            else:
                point = spawn_point(impl, n, args)
                point["estimated_mem_gb"] = est / 2**30
            points.append(point)
            shown = (f"{point['time_s']:.3f} s, {point['peak_mem_mb']:.0f} MB"
                     if point["status"] == "ok" else f"{point['status']}: {point['reason']}")
            print(f"{impl:>14} N={n:<5} {shown}", flush=True)

    pts = {(p["impl"], p["N"]): p for p in points}
    summary = {
        "time_ratio_at_2000": ratio(pts, "time_s", "linrec", "softmax", 2000),
        "memory_ratio_at_2000": ratio(pts, "peak_mem_mb", "linrec", "softmax", 2000),
        "causal_time_ratio_at_2000": ratio(pts, "time_s", "linrec_causal", "softmax", 2000),
        "causal_memory_ratio_at_2000": ratio(pts, "peak_mem_mb", "linrec_causal", "softmax", 2000),
        "linrec_time_growth_4000_over_2000": None,
        "linrec_memory_growth_4000_over_2000": None,
        "linrec_causal_time_growth_4000_over_2000": None,
    }
    for impl, key in (("linrec", "linrec_time_growth_4000_over_2000"),
                      ("linrec_causal", "linrec_causal_time_growth_4000_over_2000")):
        a, b = pts.get((impl, 4000), {}), pts.get((impl, 2000), {})
        if a.get("time_s") and b.get("time_s"):
            summary[key] = a["time_s"] / b["time_s"]
    a, b = pts.get(("linrec", 4000), {}), pts.get(("linrec", 2000), {})
    if a.get("peak_mem_mb") and b.get("peak_mem_mb"):
        summary["linrec_memory_growth_4000_over_2000"] = a["peak_mem_mb"] / b["peak_mem_mb"]

    result = {
        "command": " ".join(
            ["python", os.path.relpath(os.path.abspath(__file__), REPO)]
            + list(sys.argv[1:] if argv is None else argv)
        ),
        "machine": machine(),
        "config": {"batch": args.batch, "hidden": args.hidden, "heads": args.heads,
                   "lengths": list(lengths), "repeats": args.repeats,
                   "memory_budget_gb": budget / 2**30, "dtype": "float32",
                   "dropout": 0.0, "mode": "train", "point_env": POINT_ENV},
        "points": points,
        "summary": summary,
    }
    markdown = render_markdown(result)
    print()
    print(markdown)
    if not args.quick or args.write:
        os.makedirs(args.out_dir, exist_ok=True)
        with open(os.path.join(args.out_dir, "linear_attention_benchmark.json"), "w") as fh:
            json.dump(result, fh, indent=2)
        with open(os.path.join(args.out_dir, "linear_attention_benchmark.md"), "w") as fh:
            fh.write(markdown)


if __name__ == "__main__":
    main()
