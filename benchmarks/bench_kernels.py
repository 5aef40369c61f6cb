"""Triton kernels against the PyTorch backends, on one CUDA GPU, as achieved memory bandwidth.

For every shape the contenders run in this one process on the same inputs; the table prints
milliseconds, GB/s of the op's minimum traffic (bytes that must be read and written once,
divided by the time) as a share of the card's peak bandwidth, and each backend's time as a
multiple of the Triton time.

    python benchmarks/bench_kernels.py [--peak-gbps 3350] [--out results/kernels_benchmark.json]

LRU scan: B=128, N=128 complex64, L in {50, 200, 1000, 4096}, a left-padding mask, forward
and forward+backward. Minimum traffic: forward reads x and the mask and writes h; the
backward reads grad_h and h and writes grad_x.

LinRec attention (causal): hidden 128 as 8 heads of 16, batch 32, N in {50, 200, 1000, 2000,
4000}, float32. Minimum traffic: forward reads q, k, v and writes out; the backward reads
q, k, v and grad_out and writes grad_q, grad_k, grad_v. Both contenders compute the feature
map in PyTorch; the "core" rows time the Triton kernels alone on feature-mapped inputs.

Without CUDA it says so and exits 0.
"""
import argparse
import datetime
import json
import os
import platform
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Peak DRAM bandwidth (GB/s) from the vendors' data sheets, matched on the device name.
PEAK_GBPS = [
    ("H200", 4800.0),
    ("H100 NVL", 3900.0),
    ("H100 PCIe", 2000.0),
    ("H100", 3350.0),  # SXM5, HBM3
    ("A100-SXM4-80GB", 2039.0),
    ("A100 80GB PCIe", 1935.0),
    ("A100", 1555.0),  # 40GB
]

SCAN_B, SCAN_N, SCAN_LENGTHS = 128, 128, (50, 200, 1000, 4096)
ATTN_B, ATTN_HEADS, ATTN_HIDDEN, ATTN_LENGTHS = 32, 8, 128, (50, 200, 1000, 2000, 4000)


def peak_bandwidth(name, override):
    if override:
        return override
    for key, gbps in PEAK_GBPS:
        if key.lower() in name.lower():
            return gbps
    return None


def time_ms(fn):
    from triton.testing import do_bench

    return do_bench(fn, warmup=25, rep=100, return_mode="median")


def scan_contenders():
    from recbole_lru.ops.scan.triton import lru_scan_triton

    contenders = {"triton": lru_scan_triton}
    for module, name in (("sequential", "lru_scan_sequential"), ("parallel", "lru_scan_parallel"),
                         ("chunked", "lru_scan_chunked")):
        try:
            mod = __import__(f"recbole_lru.ops.scan.{module}", fromlist=[name])
            contenders[f"torch-{module}"] = getattr(mod, name)
        except (ImportError, AttributeError) as err:
            print(f"skipping torch-{module}: {err}")
    return contenders


def attn_contenders():
    from recbole_lru.ops.linattn.chunked import linear_attention_chunked
    from recbole_lru.ops.linattn.triton import linear_attention_triton

    return {"triton": linear_attention_triton, "torch-chunked": linear_attention_chunked}


def left_padding_mask(B, L, device):
    lengths = torch.randint(1, L + 1, (B,), device=device)
    return torch.arange(L, device=device)[None, :] >= (L - lengths)[:, None]  # [B L]


def run_case(fn, inputs, backward):
    """Milliseconds of fn(*inputs) (and its backward through a fixed random gradient)."""
    if not backward:
        with torch.no_grad():
            return time_ms(lambda: fn(*inputs))
    out = fn(*inputs)
    grad = torch.randn_like(out)
    leaves = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]

    def step():
        for t in leaves:
            t.grad = None
        fn(*inputs).backward(grad)

    return time_ms(step)


def bench_scan(rows, device):
    contenders = scan_contenders()
    for L in SCAN_LENGTHS:
        E = SCAN_B * L * SCAN_N
        elem = 8  # complex64
        traffic = {False: 2 * E * elem + SCAN_B * L, True: 5 * E * elem + 2 * SCAN_B * L}
        lam = torch.polar(0.8 + 0.19 * torch.rand(SCAN_N), 6.28 * torch.rand(SCAN_N)).to(device)
        lam.requires_grad_()
        x = torch.randn(SCAN_B, L, SCAN_N, dtype=torch.complex64, device=device, requires_grad=True)
        mask = left_padding_mask(SCAN_B, L, device)
        for backward in (False, True):
            for name, fn in contenders.items():
                ms = run_case(fn, (lam, x, mask), backward)
                rows.append(dict(op="lru_scan", length=L, mode="fwd+bwd" if backward else "fwd",
                                 backend=name, ms=ms, bytes=traffic[backward]))
            torch.cuda.empty_cache()


def bench_attn(rows, device):
    from recbole_lru.ops.linattn.feature_map import linrec_feature_map
    from recbole_lru.ops.linattn.triton import CausalLinearAttentionTriton

    contenders = attn_contenders()
    head_dim = ATTN_HIDDEN // ATTN_HEADS
    scale = head_dim ** -0.5
    for N in ATTN_LENGTHS:
        E = ATTN_B * ATTN_HEADS * N * head_dim
        traffic = {False: 4 * E * 4, True: 11 * E * 4}
        q, k, v = (torch.randn(ATTN_B, ATTN_HEADS, N, head_dim, device=device, requires_grad=True)
                   for _ in range(3))
        mask = left_padding_mask(ATTN_B, N, device)
        for backward in (False, True):
            for name, fn in contenders.items():
                ms = run_case(lambda q_, k_, v_: fn(q_, k_, v_, mask=mask, causal=True), (q, k, v), backward)
                rows.append(dict(op="linear_attention_causal", length=N, mode="fwd+bwd" if backward else "fwd",
                                 backend=name, ms=ms, bytes=traffic[backward]))
            q_hat, k_hat = (linrec_feature_map(t.detach()).requires_grad_() for t in (q, k))
            v_c = v.detach().requires_grad_()
            ms = run_case(lambda a, b, c: CausalLinearAttentionTriton.apply(a, b, c, scale, None),
                          (q_hat, k_hat, v_c), backward)
            # the core kernels alone: forward 4 passes of E elements, backward 10
            rows.append(dict(op="linear_attention_causal", length=N, mode="fwd+bwd" if backward else "fwd",
                             backend="triton-core", ms=ms, bytes=(14 if backward else 4) * E * 4))
        torch.cuda.empty_cache()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peak-gbps", type=float, default=None, help="peak memory bandwidth of the card, GB/s")
    parser.add_argument("--out", default="results/kernels_benchmark.json")
    args = parser.parse_args()

    if not torch.cuda.is_available():
        print("CUDA is not available: the Triton kernels are benchmarked on a GPU only; nothing to do.")
        return 0
    try:
        import triton
    except ImportError:
        print("triton is not installed (pip install -e .[triton]); nothing to do.")
        return 0

    device = torch.device("cuda")
    name = torch.cuda.get_device_name(device)
    peak = peak_bandwidth(name, args.peak_gbps)
    print(f"device: {name}, peak {peak or 'unknown (pass --peak-gbps)'} GB/s; "
          f"torch {torch.__version__}, triton {triton.__version__}, python {platform.python_version()}")

    rows = []
    torch.manual_seed(0)
    bench_scan(rows, device)
    bench_attn(rows, device)

    triton_ms = {(r["op"], r["length"], r["mode"]): r["ms"] for r in rows if r["backend"] == "triton"}
    header = f"{'op':<24}{'len':>6} {'mode':<8}{'backend':<17}{'ms':>10}{'GB/s':>9}{'% peak':>8}{'x triton':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        r["gbps"] = r["bytes"] / (r["ms"] * 1e-3) / 1e9
        r["pct_peak"] = 100 * r["gbps"] / peak if peak else None
        r["vs_triton"] = r["ms"] / triton_ms[(r["op"], r["length"], r["mode"])]
        pct = f"{r['pct_peak']:.1f}" if peak else "-"
        print(f"{r['op']:<24}{r['length']:>6} {r['mode']:<8}{r['backend']:<17}{r['ms']:>10.3f}"
              f"{r['gbps']:>9.1f}{pct:>8}{r['vs_triton']:>9.2f}")

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(dict(
            command=" ".join([os.path.basename(sys.executable)] + sys.argv),
            date=datetime.datetime.now().isoformat(timespec="seconds"),
            device=name, peak_gbps=peak, torch=torch.__version__, triton=triton.__version__,
            note="GB/s = minimum bytes (read inputs once, write outputs once) / median time",
            rows=rows,
        ), f, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
