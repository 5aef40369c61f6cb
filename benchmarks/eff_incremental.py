"""Claim: incremental inference, serving one appended item at a time (LRURec paper, Fig. 1 right).

    python benchmarks/eff_incremental.py [--quick] [--out results]

A batch of users, one new item per user per step, scores over the whole catalogue each step,
cumulative time: LRURec ``step()``, causal LinRec ``step()``, GRU4Rec's GRU advanced one step with its
hidden state carried, and SASRec recomputing its forward on the last <= L items (L = 50, 200).
SASRec's step t costs what a step at history min(t, L) costs, so its cumulative curve is the sum of
step times measured at a grid of history lengths (linear interpolation between them); the first steps
are also run for real as a check. Also: the multiply-add count per step (scoring included) as the
arithmetic bound, and LRURec's step time after a 2000-item history vs a 50-item one.
"""
from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import build_model, log, median, ratio  # noqa: E402
from benchmarks.eff_args import DATASETS, claim_main  # noqa: E402

CLAIM = "incremental"
HEADLINE = ["incremental_throughput_ratio_lrurec_over_sasrec_L50", "incremental_throughput_ratio_lrurec_over_sasrec_L200",
            "lrurec_step_time_ratio_L2000_over_L50"]


def add_arguments(p):
    p.add_argument("--inc-batch", type=int, default=128)
    p.add_argument("--inc-steps", type=int, default=2048)
    p.add_argument("--inc-check-steps", type=int, default=64, help="SASRec steps run for real as a check")
    p.add_argument("--inc-rounds", type=int, default=8, help="chunks the stepping models' steps are run in")
    p.add_argument("--grid-repeats", type=int, default=8, help="timed passes over each SASRec history-length grid")
    p.add_argument("--sasrec-lengths", type=int, nargs="+", default=[50, 200])
    p.add_argument("--skip-video-incremental", action="store_true")
    p.add_argument("--step-repeats", type=int, default=100)


def quick_defaults(args):
    args.inc_steps = min(args.inc_steps, 24)
    args.inc_batch = min(args.inc_batch, 8)
    args.inc_check_steps = min(args.inc_check_steps, 8)
    args.inc_rounds, args.grid_repeats = 2, 1
    args.step_repeats = min(args.step_repeats, 5)
    if args.sasrec_lengths == [50, 200]:
        args.sasrec_lengths = [8, 16]
        args.key_lengths = {8: 50, 16: 200}  # quick runs stand small lengths in for 50 and 200


def lrurec_step_macs(d, n_state, inner, n_layers, n_items):
    """Multiply-adds per user per step: per block B (d -> 2N real), the complex recurrence
    (4 real per complex multiply-add) and gamma, C (2N -> d), the PFFN; then the scoring."""
    per_block = d * 2 * n_state + 4 * n_state + 2 * n_state + 2 * n_state * d + 2 * d * inner
    return n_layers * per_block + d * n_items


def sasrec_step_macs(d, inner, n_layers, ell, n_items):
    """Multiply-adds per user for SASRec's forward over ell positions (Q, K, V, output projections,
    QK^T and AV over the full ell x ell block as RecBole computes them, the FFN) + scoring the last."""
    per_layer = ell * (4 * d * d + 2 * d * inner) + 2 * ell * ell * d
    return n_layers * per_layer + d * n_items


def gru4rec_step_macs(e, h, n_items):
    return 3 * (e * h + h * h) + h * e + e * n_items


def linrec_step_macs(d, inner, n_layers, heads, n_items):
    k = d // heads
    return n_layers * (4 * d * d + 2 * d * inner + 2 * heads * k * k) + d * n_items


def time_loop(fn, steps):
    """Run fn(t) for t in range(steps); return per-step cpu and wall seconds."""
    cpu, wall = np.zeros(steps), np.zeros(steps)
    for t in range(steps):
        w0, c0 = time.perf_counter(), time.process_time()
        fn(t)
        cpu[t] = time.process_time() - c0
        wall[t] = time.perf_counter() - w0
    return cpu, wall


def sasrec_grid(L):
    grid = sorted({1, 2, 4, 8, 16, 32, 64, 128, L // 2, (3 * L) // 4, L} & set(range(1, L + 1)))
    return grid


def run_incremental_catalogue(args, n_catalogue, tag, details):
    """All contenders on one catalogue. Returns a dict of results (per model cumulative series)."""
    n_items = n_catalogue + 1
    B, T, d = args.inc_batch, args.inc_steps, args.hidden
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(1, n_items, (B, T), generator=g)
    res = {"batch": B, "steps": T, "n_items": n_catalogue, "hidden": d, "models": {}}

    def record(label, cpu, wall, kind="measured", extra=None):
        row = {"kind": kind, "cum_cpu_s": np.cumsum(cpu).tolist(), "cum_wall_s": np.cumsum(wall).tolist(),
               "total_cpu_s": float(np.sum(cpu)), "total_wall_s": float(np.sum(wall)),
               "per_step_ms_median": float(np.median(cpu) * 1e3)}
        row.update(extra or {})
        res["models"][label] = row
        log(CLAIM, f"  [{tag}] {label:12s} {kind:8s} {row['total_cpu_s']:8.2f} s cpu over {T} steps "
            f"({row['per_step_ms_median']:.2f} ms/step median)")

    with torch.no_grad():
        # LRURec: step() carries one complex state per block
        lru, _ = build_model("LRURec", n_items, MAX_ITEM_LIST_LENGTH=200, hidden_size=d)
        lru.eval()
        lru_dims = (d, lru.state_size, lru.inner_size, lru.n_layers)
        # LinRec, causal: step() carries the running sums of k v^T per layer
        lin, _ = build_model("LinRec", n_items, MAX_ITEM_LIST_LENGTH=200, hidden_size=d, n_heads=args.heads, inner_size=4 * d,
                             causal=True, train_mode="whole_sequence")
        lin.eval()
        # GRU4Rec: its GRU advanced one step with the hidden state carried, then its dense layer, then scoring
        gru, _ = build_model("GRU4Rec", n_items, MAX_ITEM_LIST_LENGTH=200, embedding_size=d, hidden_size=d, loss_type="CE")
        gru.eval()
        states = {}

        def lru_step(t):
            _, states["LRURec"] = lru.step(ids[:, t], states["LRURec"])

        def lin_step(t):
            _, states["LinRec"] = lin.step(ids[:, t], states["LinRec"])

        def gru_step(t):
            x = gru.emb_dropout(gru.item_embedding(ids[:, t: t + 1]))  # [B 1 E]
            out, states["GRU4Rec"] = gru.gru_layers(x, states["GRU4Rec"])
            _ = gru.dense(out[:, -1]) @ gru.item_embedding.weight.t()

        steppers = {"LRURec": (lru_step, lambda: lru.init_state(B)),
                    "LinRec": (lin_step, lambda: lin.init_state(B)),
                    "GRU4Rec": (gru_step, lambda: None)}

        # SASRec: its forward over the last <= L items, the last position scored
        sasrecs = {}
        for L in args.sasrec_lengths:
            sas, _ = build_model("SASRec", n_items, MAX_ITEM_LIST_LENGTH=L, hidden_size=d, n_heads=args.heads, inner_size=4 * d,
                                 loss_type="CE")
            sas.eval()
            res.setdefault("sasrec_dims", (d, 4 * d, sas.n_layers))

            def sas_at(t, sas=sas, L=L):
                hist = ids[:, max(0, t + 1 - L): t + 1]
                lens = torch.full((B,), hist.shape[1], dtype=torch.long)
                _ = sas.forward(hist, lens) @ sas.item_embedding.weight.t()

            sasrecs[L] = (sas_at, sasrec_grid(min(L, T)), {})

        # warm-up, then rounds: a chunk of every stepping model's steps, one pass over every SASRec
        # grid; interleaved so that all contenders run under the same machine load
        for name, (fn, init) in steppers.items():
            states[name] = init()
            fn(0)
            states[name] = init()
        for sas_at, grid, _ in sasrecs.values():
            sas_at(grid[-1] - 1)
        per_step = {name: (np.zeros(T), np.zeros(T)) for name in steppers}
        n_rounds = max(args.inc_rounds, args.grid_repeats)
        bounds_t = np.linspace(0, T, args.inc_rounds + 1).astype(int)
        for r in range(n_rounds):
            if r < args.inc_rounds:
                for name, (fn, _) in steppers.items():
                    for t in range(bounds_t[r], bounds_t[r + 1]):
                        w0, c0 = time.perf_counter(), time.process_time()
                        fn(t)
                        per_step[name][0][t] = time.process_time() - c0
                        per_step[name][1][t] = time.perf_counter() - w0
            if r < args.grid_repeats:
                for sas_at, grid, per_len in sasrecs.values():
                    for ell in grid:
                        w0, c0 = time.perf_counter(), time.process_time()
                        sas_at(ell - 1)
                        per_len.setdefault(ell, []).append((time.process_time() - c0, time.perf_counter() - w0))
        for name in steppers:
            record(name, *per_step[name])

        for L, (sas_at, grid, per_len) in sasrecs.items():
            grid_cpu = [median([c for c, _ in per_len[e]]) for e in grid]
            grid_wall = [median([w for _, w in per_len[e]]) for e in grid]
            cpu_at = np.interp(np.arange(1, L + 1), grid, grid_cpu)
            wall_at = np.interp(np.arange(1, L + 1), grid, grid_wall)
            hist_len = np.minimum(np.arange(1, T + 1), L)
            cpu, wall = cpu_at[hist_len - 1], wall_at[hist_len - 1]
            # the first steps for real, as a check of the sum
            n_check = min(T, args.inc_check_steps)
            ccpu, _ = time_loop(sas_at, n_check)
            check = float(np.sum(ccpu) / np.sum(cpu[:n_check])) if n_check else None
            record(f"SASRec-L{L}", cpu, wall, kind="modelled", extra={
                "grid": grid, "grid_step_cpu_ms": [c * 1e3 for c in grid_cpu], "grid_repeats": args.grid_repeats,
                "check_steps": n_check, "check_measured_over_modelled": check})

    # arithmetic bound: multiply-adds per user per step, the scoring included
    dd, n_state, inner, n_layers = lru_dims
    lru_macs = lrurec_step_macs(dd, n_state, inner, n_layers, n_items)
    bounds = {"LRURec_macs_per_step": lru_macs}
    for L in args.sasrec_lengths:
        steady = sasrec_step_macs(d, 4 * d, 2, L, n_items)
        cum = sum(sasrec_step_macs(d, 4 * d, 2, min(t, L), n_items) for t in range(1, T + 1))
        bounds[f"SASRec_L{L}_macs_per_step_steady"] = steady
        bounds[f"bound_ratio_steady_L{L}"] = steady / lru_macs
        bounds[f"bound_ratio_cumulative_L{L}"] = cum / (T * lru_macs)
    bounds["GRU4Rec_macs_per_step"] = gru4rec_step_macs(d, d, n_items)
    bounds["LinRec_macs_per_step"] = linrec_step_macs(d, 4 * d, 2, args.heads, n_items)
    res["bounds"] = bounds
    details.setdefault("incremental", {})[tag] = res
    return res


def run(args, out, notes, details):
    catalogues = [("ml-1m-pos4", DATASETS["ml-1m-pos4"][1])]
    if not args.skip_video_incremental:
        catalogues.append(("video", DATASETS["amazon-video-games"][1]))
    if args.quick:
        catalogues = [(tag, args.quick_items) for tag, _ in catalogues]
    results = {}
    for tag, n_catalogue in catalogues:
        log(CLAIM, f"incremental inference, {tag} catalogue ({n_catalogue} items), B={args.inc_batch}, "
            f"{args.inc_steps} steps")
        results[tag] = res = run_incremental_catalogue(args, n_catalogue, tag, details)
        lru_total = res["models"]["LRURec"]["total_cpu_s"]
        suffix = "" if tag == "ml-1m-pos4" else f"_{tag}"
        for L in args.sasrec_lengths:
            name = getattr(args, "key_lengths", {}).get(L, L)  # quick runs stand small lengths in for 50 and 200
            r = ratio(res["models"][f"SASRec-L{L}"]["total_cpu_s"], lru_total)
            out[f"incremental_throughput_ratio_lrurec_over_sasrec_L{name}{suffix}"] = r
            cb = res["bounds"][f"bound_ratio_cumulative_L{L}"]
            out[f"incremental_bound_ratio_L{name}{suffix}"] = cb
            out[f"incremental_bound_ratio_steady_L{name}{suffix}"] = res["bounds"][f"bound_ratio_steady_L{L}"]
            out[f"incremental_measured_over_bound_L{name}{suffix}"] = ratio(r, cb)
            if name != L:
                notes[f"incremental_throughput_ratio_lrurec_over_sasrec_L{name}{suffix}"] = (
                    f"quick run: SASRec at L={L}, {args.inc_steps} steps, {n_catalogue} items")
        for other in ("LinRec", "GRU4Rec"):
            out[f"incremental_time_ratio_{other.lower()}_over_lrurec{suffix}"] = ratio(
                res["models"][other]["total_cpu_s"], lru_total)
    for L in (50, 200):
        if L not in [getattr(args, "key_lengths", {}).get(x, x) for x in args.sasrec_lengths]:
            notes[f"incremental_throughput_ratio_lrurec_over_sasrec_L{L}"] = f"L={L} not run (--sasrec-lengths)"
            out.setdefault(f"incremental_throughput_ratio_lrurec_over_sasrec_L{L}", None)

    # LRURec step() after a long history vs a short one: the state has a fixed size
    n_items = (args.quick_items if args.quick else DATASETS["ml-1m-pos4"][1]) + 1
    B = args.inc_batch
    long_len, short_len = (200, 50) if args.quick else (2000, 50)
    with torch.no_grad():
        lru, _ = build_model("LRURec", n_items, MAX_ITEM_LIST_LENGTH=long_len, hidden_size=args.hidden)
        lru.eval()
        g = torch.Generator().manual_seed(3)
        hist = torch.randint(1, n_items, (B, long_len), generator=g)
        s_long = lru.encode_history(hist, torch.full((B,), long_len))
        s_short = lru.encode_history(hist[:, :short_len], torch.full((B,), short_len))
        nxt = torch.randint(1, n_items, (B,), generator=g)
        lru.step(nxt, s_short)
        t_long, t_short = [], []
        for _ in range(args.step_repeats):
            for st, acc in ((s_short, t_short), (s_long, t_long)):
                c0 = time.process_time()
                lru.step(nxt, st)
                acc.append(time.process_time() - c0)
    out["lrurec_step_time_ratio_L2000_over_L50"] = ratio(median(t_long), median(t_short))
    details.setdefault("incremental", {})["lrurec_history_length"] = {
        "long": long_len, "short": short_len, "batch": B, "repeats": args.step_repeats,
        "step_ms_long": median(t_long) * 1e3, "step_ms_short": median(t_short) * 1e3,
        "state_numel_per_user": sum(s.shape[-1] for s in s_long)}
    if args.quick:
        notes["lrurec_step_time_ratio_L2000_over_L50"] = f"quick run: histories {long_len} vs {short_len}"
    plot_incremental(args, results)
    compact_series(details)


def plot_incremental(args, results):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6.2 * len(results), 4.6), squeeze=False)
    for ax, (tag, res) in zip(axes[0], results.items()):
        for label, row in res["models"].items():
            xs = np.arange(1, len(row["cum_cpu_s"]) + 1)
            style = "--" if row["kind"] == "modelled" else "-"
            ax.plot(xs, row["cum_cpu_s"], style, label=label + (" (from timed history lengths)" if row["kind"] == "modelled" else ""))
        ax.set_xlabel("appended items (steps)")
        ax.set_ylabel("cumulative CPU seconds (1 thread)")
        ax.set_title(f"{tag}: {res['n_items']} items, batch {res['batch']}, hidden {res['hidden']}")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "incremental_inference.png"), dpi=120)
    plt.close(fig)


def markdown(details, fmt):
    inc = details.get(CLAIM)
    if not inc:
        return []
    lines = ["## Incremental inference", "",
             "Cumulative CPU seconds to append one item per user and score the whole catalogue, step after step "
             "(`incremental_inference.png`); SASRec rows are summed from step times at a grid of history lengths, "
             "`check` = measured/modelled over the first steps run for real.", "",
             "| catalogue | model | total (s) | ms/step (median) | check |", "|---|---|---|---|---|"]
    for tag, res in inc.items():
        if not isinstance(res, dict) or "models" not in res:
            continue
        for name, row in res["models"].items():
            lines.append(f"| {tag} ({res['n_items']} items, B={res['batch']}, {res['steps']} steps) | {name} | "
                         f"{fmt(row['total_cpu_s'])} | {fmt(row['per_step_ms_median'])} | "
                         f"{fmt(row.get('check_measured_over_modelled'))} |")
    h = inc.get("lrurec_history_length")
    if h:
        lines += ["", f"LRURec `step()` after {h['long']} items: {h['step_ms_long']:.2f} ms; after {h['short']}: "
                      f"{h['step_ms_short']:.2f} ms (batch {h['batch']}, state of {h['state_numel_per_user']} numbers per user)."]
    return lines + [""]


def compact_series(details, every=32):
    """Keep the cumulative series at steps 1..64, every ``every``-th step and the last (the plot is
    drawn from the full series first)."""
    for res in (details.get(CLAIM) or {}).values():
        for row in (res.get("models") or {}).values() if isinstance(res, dict) else ():
            if "cum_steps" in row:
                continue
            T = len(row["cum_cpu_s"])
            steps = sorted({*range(1, min(64, T) + 1), *range(every, T + 1, every), T})
            row["cum_steps"] = steps
            for key in ("cum_cpu_s", "cum_wall_s"):
                row[key] = [round(row[key][t - 1], 6) for t in steps]


if __name__ == "__main__":
    sys.exit(claim_main(sys.modules[__name__]))
