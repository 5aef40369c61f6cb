"""Claim: the floor. The unavoidable part of a whole-sequence training step (embedding lookup, scoring
of every real position against all items, cross-entropy) next to LRURec's full step on the same
batches (each pair timed back to back; the ratio is the median over batches), LRURec on the whole
padded grid beside it, and a torch.profiler breakdown of LRURec's step (with and without autograd
anomaly mode, which RecBole's sine.py switches on at import).

    python benchmarks/eff_floor.py [--quick] [--out results]

The floor scores through the same op as the model (``recbole_lru.ops.linear_cross_entropy`` with
the model's ``ce_backend``), so the ratio measures the encoder, not a difference in scoring code.
"""
from __future__ import annotations

import gc
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import (Clock, build_model, log, make_batch, median, synthetic_counts,  # noqa: E402
                               training_rows, user_counts)
from benchmarks.eff_args import DATASETS, claim_main  # noqa: E402

CLAIM = "floor"
HEADLINE = ["lrurec_train_step_over_floor_L200"]


def add_arguments(p):
    p.add_argument("--floor-repeats", type=int, default=9)
    p.add_argument("--profile-top", type=int, default=15)
    p.add_argument("--anomaly-repeats", type=int, default=3)


def quick_defaults(args):
    args.floor_repeats = 1
    args.profile_top = min(args.profile_top, 8)
    args.anomaly_repeats = 1


def run(args, out, notes, details):
    from recbole_lru.data import next_item_labels
    from recbole_lru.ops.linear_ce import linear_cross_entropy

    rng = np.random.default_rng(5)
    res = {}
    for dataset, (suffix, n_catalogue, max_len) in DATASETS.items():
        if args.quick:
            n_catalogue, max_len = args.quick_items, args.quick_len
        n_items = n_catalogue + 1
        counts = None if args.quick else user_counts(args.data_path, dataset)
        if counts is None:
            counts = synthetic_counts(200 if args.quick else 5000, 10 if suffix == "video" else 95, rng)
        _, whole_rows = training_rows(counts, max_len)
        g = torch.Generator().manual_seed(6)
        batches = [make_batch(rng.choice(whole_rows, args.train_batch), max_len, n_items, g)
                   for _ in range(args.floor_repeats + 1)]
        lru, _ = build_model("LRURec", n_items, MAX_ITEM_LIST_LENGTH=max_len, hidden_size=args.hidden, train_mode="whole_sequence")
        lru.train()
        # the floor: its own embedding table and bias, the same scoring and loss as LRURec's
        emb = torch.nn.Embedding(n_items, args.hidden, padding_idx=0)
        bias = torch.nn.Parameter(torch.zeros(n_items))

        def floor_loss(inter):
            seq, lens = inter["item_id_list"], inter["item_length"]
            labels = next_item_labels(seq, lens, inter["item_id"])
            real = labels > 0
            h = emb(seq)[real]
            return linear_cross_entropy(h, emb.weight, labels[real], bias, backend=lru.ce_backend)

        def padded_grid_loss(inter):
            """LRURec's step computed on the whole padded (B, L) grid (before the real-position packing)."""
            from recbole_lru.models._common import sequence_loss

            seq, lens = inter["item_id_list"], inter["item_length"]
            mask = seq > 0
            x = lru.embed(seq)
            for block in lru.blocks:
                x, _ = block(x, mask)
            return sequence_loss(lru, inter, x, seq, lens)

        contenders = {"floor": (floor_loss, [emb, bias]), "LRURec": (lru.calculate_loss, [lru]),
                      "LRURec_padded_grid": (padded_grid_loss, [lru])}
        times = {k: [] for k in contenders}
        for i, inter in enumerate(batches):
            for name, (fn, params) in contenders.items():
                for p in params:
                    if isinstance(p, torch.nn.Module):
                        p.zero_grad(set_to_none=True)
                    else:
                        p.grad = None
                with Clock() as c:
                    fn(inter).backward()
                if i > 0:
                    times[name].append(c.cpu)
        r = {k: median(v) for k, v in times.items()}
        paired = [a / b for a, b in zip(times["LRURec"], times["floor"])]  # same batch, same moment
        paired_grid = [a / b for a, b in zip(times["LRURec_padded_grid"], times["floor"])]
        # multiply-adds of the matrix products (forward + the two of the backward), per real position
        d = args.hidden
        per_block = 2 * d * 2 * lru.state_size + 2 * d * lru.inner_size
        res[dataset] = {"batch": args.train_batch, "max_len": max_len, "n_items": n_catalogue,
                        "step_cpu_s": r, "mean_real_positions": float(np.mean(whole_rows)),
                        "repeats": args.floor_repeats, "paired_ratios": paired,
                        "ratio_median_of_pairs": median(paired),
                        "n_layers": lru.n_layers, "hidden": d,
                        "macs_per_real_position": {"scoring": 3 * d * n_items,
                                                   "encoder_matmuls": 3 * lru.n_layers * per_block}}
        key = f"lrurec_train_step_over_floor_{suffix}" if suffix == "video" else "lrurec_train_step_over_floor_L200"
        out[key] = median(paired)
        out[f"lrurec_padded_grid_step_over_floor_{suffix}"] = median(paired_grid)
        log(CLAIM, f"  floor {dataset}: floor {r['floor']:.3f} s, LRURec {r['LRURec']:.3f} s, "
            f"LRURec on the padded grid {r['LRURec_padded_grid']:.3f} s (cpu); LRURec/floor per batch "
            f"{min(paired):.2f}..{max(paired):.2f}, median {median(paired):.2f}")
        if dataset == "ml-1m-pos4":
            res["profile"] = profile_lrurec_step(lru, batches[1], args)
        del lru
        gc.collect()
    if args.quick:
        notes["lrurec_train_step_over_floor_L200"] = f"quick run: L={args.quick_len}, {args.quick_items} items"
    details[CLAIM] = res


def profile_lrurec_step(model, inter, args):
    """torch.profiler over one LRURec training step (forward + backward), by operator (self CPU
    time); with autograd anomaly mode on, the same step's extra operators and their parents."""
    from torch.profiler import ProfilerActivity, profile

    def step():
        model.zero_grad(set_to_none=True)
        model.calculate_loss(inter).backward()

    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    top = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[: args.profile_top]
    ops = [{"op": e.key, "self_cpu_ms": e.self_cpu_time_total / 1e3, "share": e.self_cpu_time_total / total,
            "calls": e.count} for e in top]

    # anomaly mode (RecBole's sine.py switches it on at import): where aten::ne / aten::any come from
    import warnings

    was = torch.is_anomaly_enabled()
    t_on, t_off = [], []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(args.anomaly_repeats):  # alternate, so both see the same load
                for mode, acc in ((True, t_on), (False, t_off)):
                    torch.autograd.set_detect_anomaly(mode)
                    with Clock() as c:
                        step()
                    acc.append(c.cpu)
            torch.autograd.set_detect_anomaly(True)
            with profile(activities=[ProfilerActivity.CPU]) as prof_on:
                step()
    finally:
        torch.autograd.set_detect_anomaly(was)
    parents, ne_any_us = {}, 0.0
    for e in prof_on.events():
        if e.name in ("aten::ne", "aten::any"):
            ne_any_us += e.self_cpu_time_total
            chain = []
            p = e.cpu_parent
            while p is not None and len(chain) < 2:
                chain.append(p.name.replace("autograd::engine::evaluate_function: ", ""))
                p = p.cpu_parent
            key = " <- ".join(chain)
            parents[key] = parents.get(key, 0) + 1
    on_total = sum(e.self_cpu_time_total for e in prof_on.key_averages())
    return {
        "top_ops": ops, "total_self_cpu_ms": total / 1e3,
        "anomaly_mode": {
            "step_cpu_s_on": median(t_on), "step_cpu_s_off": median(t_off), "repeats": args.anomaly_repeats,
            "ne_any_share_of_step_when_on": ne_any_us / on_total if on_total else None,
            "ne_any_parents": dict(sorted(parents.items(), key=lambda kv: -kv[1])[:12]),
            "enabled_in_this_process_before": was,
        },
    }


def markdown(details, fmt):
    fl = details.get(CLAIM)
    if not fl:
        return []
    lines = ["## The floor", "", "Embedding lookup + scoring of every real position + cross-entropy (forward + backward) "
             "next to LRURec's step on the same batches; LRURec/floor = median over batches of the same-batch ratio.", "",
             "| dataset | floor (s) | LRURec (s) | LRURec, padded grid (s) | LRURec/floor (range) | mean real positions |",
             "|---|---|---|---|---|---|"]
    for ds, r in fl.items():
        if ds == "profile":
            continue
        s = r["step_cpu_s"]
        lines.append(f"| {ds} (B={r['batch']}, L={r['max_len']}, {r['n_items']} items) | {fmt(s['floor'])} | "
                     f"{fmt(s['LRURec'])} | {fmt(s['LRURec_padded_grid'])} | {fmt(r['ratio_median_of_pairs'])} "
                     f"({fmt(min(r['paired_ratios']))}..{fmt(max(r['paired_ratios']))}) | "
                     f"{r['mean_real_positions']:.1f} of {r['max_len']} |")
    prof = fl.get("profile")
    if prof:
        lines += ["", f"Profile of one LRURec step (ml-1m-pos4 shape), top operators by self CPU time "
                      f"(total {prof['total_self_cpu_ms']:.0f} ms under the profiler):", "",
                  "| op | self CPU (ms) | share | calls |", "|---|---|---|---|"]
        for o in prof["top_ops"]:
            lines.append(f"| `{o['op']}` | {o['self_cpu_ms']:.1f} | {o['share'] * 100:.1f}% | {o['calls']} |")
        am = prof["anomaly_mode"]
        lines += ["", f"Autograd anomaly mode on / off: {fmt(am['step_cpu_s_on'])} s / {fmt(am['step_cpu_s_off'])} s "
                      f"per step (medians of {am['repeats']} alternated)."]
    return lines + [""]


if __name__ == "__main__":
    sys.exit(claim_main(sys.modules[__name__]))
