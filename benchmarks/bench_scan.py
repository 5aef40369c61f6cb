"""LRU scan: every implementation side by side, forward alone and forward+backward.

    python benchmarks/bench_scan.py            # B=128, N=128 (hidden 64), L in 50, 200, 1000, 4096
    python benchmarks/bench_scan.py --quick    # small sizes, a smoke run

Contenders, each on the same complex64 inputs with a padding mask:
    floor               one elementwise complex multiply-add over x (x + lam * x): the memory floor
    dispatched          lru_scan(backend="auto")
    sequential          time loop, reverse-scan backward
    parallel            recursive parallelization (paper Alg. 1), same passes reversed for the backward
    chunked             Toeplitz matmul per chunk, transposed for the backward
    parallel_autograd   Alg. 1 differentiated by autograd (how the paper trains)
    chunked_autograd    the chunked form differentiated by autograd
    reference           the time loop; forward+backward is autograd through every step (the naive baseline)
Prints a Markdown table and the target ratios; writes results/scan_benchmark.json.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from recbole_lru.ops.scan import lru_scan, lru_scan_reference, resolve_backend  # noqa: E402
from recbole_lru.ops.scan.chunked import lru_scan_chunked, lru_scan_chunked_autograd  # noqa: E402
from recbole_lru.ops.scan.parallel import lru_scan_parallel, lru_scan_parallel_autograd  # noqa: E402
from recbole_lru.ops.scan.sequential import lru_scan_sequential  # noqa: E402


def _floor(lam, x, mask):
    return torch.addcmul(x, lam, x)


CONTENDERS = {
    "floor": _floor,
    "dispatched": lambda lam, x, mask: lru_scan(lam, x, mask, backend="auto"),
    "sequential": lru_scan_sequential,
    "parallel": lru_scan_parallel,
    "chunked": lru_scan_chunked,
    "parallel_autograd": lru_scan_parallel_autograd,
    "chunked_autograd": lru_scan_chunked_autograd,
    "reference": lru_scan_reference,
}
# contenders that are forms of the scan (the floor is not one)
SCAN_IMPLS = [name for name in CONTENDERS if name != "floor"]
SINGLE_IMPLS = ["sequential", "parallel", "chunked", "parallel_autograd", "chunked_autograd", "reference"]


def make_inputs(B, L, N, seed=0):
    g = torch.Generator().manual_seed(seed)
    radius = 0.8 + 0.19 * torch.rand(N, generator=g)
    lam = torch.polar(radius, 2 * torch.pi * torch.rand(N, generator=g))
    x = torch.randn(B, L, N, dtype=torch.complex64, generator=g)
    lengths = torch.randint(1, L + 1, (B,), generator=g)
    mask = torch.arange(L).unsqueeze(0) >= (L - lengths).unsqueeze(1)  # left padding
    grad = torch.randn(B, L, N, dtype=torch.complex64, generator=g)
    return lam, x, mask, grad


def run_once(fn, lam, x, mask, grad, mode):
    """Seconds for one call: forward under no_grad, or forward then backward to lam and x."""
    if mode == "fwd":
        start = time.perf_counter()
        with torch.no_grad():
            fn(lam, x, mask)
        return time.perf_counter() - start
    lam_ = lam.detach().requires_grad_()
    x_ = x.detach().requires_grad_()
    start = time.perf_counter()
    h = fn(lam_, x_, mask)
    torch.autograd.grad(h, (lam_, x_), grad_outputs=grad)
    return time.perf_counter() - start


def limits(L, quick):
    """Which (contender, mode) pairs run at length L, and why some do not."""
    skipped = {}
    if not quick:
        if L > 1000:
            skipped[("reference", "fwd+bwd")] = "autograd through 4096 steps: minutes per call (see L<=1000)"
            skipped[("parallel_autograd", "fwd+bwd")] = "keeps log2(L) copies of x for backward: out of memory"
            skipped[("parallel_autograd", "fwd")] = "same form as parallel forward"
            skipped[("chunked_autograd", "fwd+bwd")] = "slowest form here; see L<=1000"
            skipped[("chunked_autograd", "fwd")] = "same form as chunked forward"
    return skipped


def bench_point(B, L, N, repeats, quick):
    lam, x, mask, grad = make_inputs(B, L, N)
    skipped = limits(L, quick)
    results = {}
    for mode in ("fwd", "fwd+bwd"):
        names = [n for n in CONTENDERS if (n, mode) not in skipped]
        # the naive loop under autograd is slow: one warmup-free run when long
        slow = {"reference"} if mode == "fwd+bwd" and L >= 1000 else set()
        times = {n: [] for n in names}
        for n in names:
            if n not in slow:
                run_once(CONTENDERS[n], lam, x, mask, grad, mode)  # warmup
        for rep in range(repeats):
            for n in names:  # interleaved, so a busy spell on the machine hits every contender
                if n in slow and rep > 0:
                    continue
                times[n].append(run_once(CONTENDERS[n], lam, x, mask, grad, mode))
        for n in names:
            results[(n, mode)] = dict(median_ms=1e3 * statistics.median(times[n]), runs=len(times[n]))
        print(f"  L={L} {mode}: " + ", ".join(f"{n} {results[(n, mode)]['median_ms']:.1f}" for n in names), flush=True)
    for key, why in skipped.items():
        results[key] = dict(median_ms=None, skipped=why)
    return results


def fmt(entry):
    if entry is None or entry.get("median_ms") is None:
        return "skipped"
    ms = entry["median_ms"]
    return f"{ms:.1f}" if ms < 1000 else f"{ms:,.0f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per point (median reported)")
    parser.add_argument("--out", default="results/scan_benchmark.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    if args.quick:
        B, N, lengths, repeats = 4, 16, [50, 200], args.repeats or 3
    else:
        B, N, lengths, repeats = 128, 128, [50, 200, 1000, 4096], args.repeats or 5

    machine = dict(
        platform=platform.platform(),
        processor=platform.processor(),
        cpu_count=os.cpu_count(),
        torch=torch.__version__,
        python=platform.python_version(),
        threads=torch.get_num_threads(),
        loadavg=os.getloadavg() if hasattr(os, "getloadavg") else None,
    )
    print(f"LRU scan benchmark, B={B}, N={N}, complex64, median of {repeats} timed runs "
          f"(x3 at L<=50, +2 at L<=200, at most 3 at L>1000), one thread")
    print(f"machine: {machine}")

    points = {}
    backends = {}
    for L in lengths:
        # short points are noisy on a shared machine: more runs there (the median is what counts)
        reps = repeats * 3 if L <= 50 else repeats + 2 if L <= 200 else repeats if L <= 1000 else min(repeats, 3)
        points[L] = bench_point(B, L, N, reps, args.quick)
        probe = torch.zeros(B, L, N, dtype=torch.complex64)
        backends[L] = resolve_backend(torch.zeros(N, dtype=torch.complex64), probe)

    # table: one row per contender, a column per (L, mode)
    header = ["implementation"] + [f"L={L} {m}" for L in lengths for m in ("fwd", "fwd+bwd")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for n in CONTENDERS:
        row = [n] + [fmt(points[L].get((n, m))) for L in lengths for m in ("fwd", "fwd+bwd")]
        lines.append("| " + " | ".join(row) + " |")
    print()
    print(f"Times in ms (B={B}, N={N}); dispatched picks: " + ", ".join(f"L={L}: {b}" for L, b in backends.items()))
    print("\n".join(lines))

    def ms(n, L, m):
        entry = points[L].get((n, m))
        return None if entry is None else entry.get("median_ms")

    ratios = {}
    L_train = 200 if 200 in lengths else lengths[-1]
    ratios["dispatched_over_floor_fwd_bwd_L%d" % L_train] = ms("dispatched", L_train, "fwd+bwd") / ms(
        "floor", L_train, "fwd+bwd"
    )
    L_naive = 1000 if 1000 in lengths else lengths[-1]
    ratios["naive_loop_over_dispatched_fwd_bwd_L%d" % L_naive] = ms("reference", L_naive, "fwd+bwd") / ms(
        "dispatched", L_naive, "fwd+bwd"
    )
    for L in lengths:
        best = min((ms(n, L, "fwd"), n) for n in SINGLE_IMPLS if ms(n, L, "fwd") is not None)
        ratios[f"dispatched_over_best_fwd_L{L}"] = ms("dispatched", L, "fwd") / best[0]
        ratios[f"best_fwd_L{L}"] = best[1]
    print()
    print(f"dispatched fwd+bwd / floor fwd+bwd at L={L_train}: "
          f"{ratios['dispatched_over_floor_fwd_bwd_L%d' % L_train]:.2f} (target <= 4)")
    print(f"naive autograd loop / dispatched fwd+bwd at L={L_naive}: "
          f"{ratios['naive_loop_over_dispatched_fwd_bwd_L%d' % L_naive]:.1f} (target >= 10)")
    for L in lengths:
        print(f"inference L={L}: dispatched / best single ({ratios[f'best_fwd_L{L}']}) = "
              f"{ratios[f'dispatched_over_best_fwd_L{L}']:.2f} (target <= 1, within timing noise)")
    if not args.quick:
        print("skipped: " + "; ".join(f"{n} {m} at L>1000 ({why})" for (n, m), why in limits(4096, False).items()))

    out = dict(
        command=" ".join([os.path.basename(sys.executable)] + sys.argv),
        machine=machine,
        shape=dict(B=B, N=N, dtype="complex64"),
        repeats=repeats,
        dispatched_backend={str(L): b for L, b in backends.items()},
        points=[
            dict(impl=n, L=L, mode=m, **entry) for L in lengths for (n, m), entry in sorted(points[L].items())
        ],
        ratios=ratios,
        table_markdown="\n".join(lines),
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
