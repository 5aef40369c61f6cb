"""Claim: training cost of LRURec next to SASRec (seconds per epoch, time to best, one optimizer step).

    python benchmarks/eff_train.py [--quick] [--summaries-only] [--out results/efficiency_train.json]

(a) Seconds per epoch and wall time to the best validation Recall@10, read from the comparison
harness's one-protocol runs, ``results/<dataset>_fair/<dataset>/summary.json`` (see ``SUMMARIES``;
full training runs are too long to redo here): LRURec vs
SASRecWS (both whole-sequence), LRURec:prefix vs SASRec (both prefix rows) where present, and the time
to the best validation Recall@10 both models reached.
(b) Measured here: one optimizer step (forward, backward, clipping as configured, the trainer's
optimizer) on synthetic batches shaped like the real training batches (lengths from the real
per-user counts in ``<data_path>/<name>/<name>.inter``, RecBole's leave-one-out split and windowing,
random item ids), interleaved round-robin; the per-epoch estimate = steps per epoch x step time.
"""
from __future__ import annotations

import gc
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.common import (REPO, Clock, build_model, log, make_batch, median, optimizer_for,  # noqa: E402
                               ratio, synthetic_counts, training_rows, user_counts)
from benchmarks.eff_args import DATASETS, claim_main  # noqa: E402

CLAIM = "train"
HEADLINE = ["train_epoch_ratio_sasrec_over_lrurec_ml-1m-pos4", "time_to_best_ratio_sasrec_over_lrurec_ml-1m-pos4",
            "train_epoch_ratio_sasrec_over_lrurec_video", "time_to_best_ratio_sasrec_over_lrurec_video"]


def add_arguments(p):
    p.add_argument("--summaries-only", action="store_true", help="only read the comparison summaries (no step timing)")


# The comparison runs the time ratios are read from: every model trained under one optimisation
# protocol (AdamW, decoupled decay on weights and embeddings, clipping 5), each run's COMMAND.sh beside it
SUMMARIES = {  # dataset -> (key suffix, folder under results/)
    "ml-1m-pos4": ("ml-1m-pos4", "ml-1m-pos4_fair"),
    "amazon-video-games": ("video", "video_fair"),
    "amazon-beauty": ("beauty", "beauty_fair"),
}


def read_summary(results_dir, dataset):
    path = os.path.join(results_dir, SUMMARIES[dataset][1], dataset, "summary.json")
    if not os.path.exists(path):
        return None, f"{os.path.relpath(path, REPO)} does not exist (no comparison run for {dataset} yet)"
    try:
        with open(path) as fh:
            return json.load(fh), None
    except (OSError, ValueError) as exc:
        return None, f"{os.path.relpath(path, REPO)} unreadable: {exc}"


def summary_ratio(summary, summary_err, num_model, den_model, field):
    """summary[models][num][field] / summary[models][den][field], or (None, reason)."""
    if summary is None:
        return None, summary_err
    models = summary.get("models") or {}
    for m in (num_model, den_model):
        row = models.get(m)
        if row is None:
            return None, f"no {m} row in the summary (models present: {sorted(models) or 'none'})"
        if row.get("error"):
            return None, f"{m} row has an error: {str(row['error'])[:200]}"
        if row.get(field) is None:
            return None, f"{m} row has no {field} (run unfinished or no validation yet)"
        if field == "seconds_to_best" and row.get("stopped_by") == "time_budget":
            # its best is the last epoch the budget allowed, not where it would converge
            return None, f"{m} row was stopped by its time budget: its time to best is not known"
    return models[num_model][field] / models[den_model][field], None


def seconds_to_reach(row, target):
    """Wall seconds until the row's validation Recall@10 first reached ``target`` (None if never)."""
    for point in row.get("curve") or []:
        if point.get("recall@10") is not None and point["recall@10"] >= target:
            return point["seconds"]
    return None


def common_target_ratio(summary, num_model, den_model):
    """Time-to-target ratio, the target being the lower of the two models' best validation Recall@10."""
    models = (summary or {}).get("models") or {}
    rows = [models.get(num_model), models.get(den_model)]
    if any(r is None or r.get("error") or not r.get("curve") for r in rows):
        return None, None
    target = min(max(p["recall@10"] for p in r["curve"] if p.get("recall@10") is not None) for r in rows)
    t_num, t_den = (seconds_to_reach(r, target) for r in rows)
    return (t_num / t_den if t_num and t_den else None), {
        "target_valid_recall@10": target, f"{num_model}_seconds": t_num, f"{den_model}_seconds": t_den,
        "stopped_by": {num_model: rows[0].get("stopped_by"), den_model: rows[1].get("stopped_by")}}


def summary_block(dataset, suffix, args, out, notes):
    summary, err = read_summary(args.results_dir, dataset)
    rows = {}
    for name, row in ((summary or {}).get("models") or {}).items():
        rows[name] = {k: row.get(k) for k in ("regime", "seconds_per_epoch", "seconds_to_best", "epochs_to_best",
                                              "epochs_run", "stopped_by", "error")}
        opt = row.get("optimization") or {}
        rows[name]["learner"] = opt.get("optimizer")
        rows[name]["weight_decay"] = f"{opt.get('weight_decay')} {opt.get('decay')}" if opt else None
        rows[name]["test_recall@10"] = (row.get("test") or {}).get("recall@10")
    pairs = [
        (f"train_epoch_ratio_sasrec_over_lrurec_{suffix}", "SASRecWS", "LRURec", "seconds_per_epoch"),
        (f"time_to_best_ratio_sasrec_over_lrurec_{suffix}", "SASRecWS", "LRURec", "seconds_to_best"),
        (f"train_epoch_ratio_sasrec_over_lrurec_prefix_{suffix}", "SASRec", "LRURec:prefix", "seconds_per_epoch"),
        (f"time_to_best_ratio_sasrec_over_lrurec_prefix_{suffix}", "SASRec", "LRURec:prefix", "seconds_to_best"),
    ]
    for key, num, den, field in pairs:
        out[key], reason = summary_ratio(summary, err, num, den, field)
        if out[key] is None:
            notes[key] = reason
    key = f"time_to_common_target_ratio_sasrec_over_lrurec_{suffix}"
    out[key], info = common_target_ratio(summary, "SASRecWS", "LRURec")
    return {"rows": rows, "error": err, "common_target": info}


def step_times(dataset, suffix, n_catalogue, max_len, args, out, notes, rng):
    if args.quick:
        n_catalogue, max_len = args.quick_items, args.quick_len
    n_items = n_catalogue + 1
    counts = None if args.quick else user_counts(args.data_path, dataset)
    if counts is None:
        counts = synthetic_counts(200 if args.quick else 5000, 10 if suffix == "video" else 95, rng)
        if not args.quick:
            notes[f"train_step_ratio_sasrec_over_lrurec_{suffix}"] = (
                f"{dataset}.inter not found under {args.data_path}: synthetic lengths used")
    prefix_rows, whole_rows = training_rows(counts, max_len)
    batch = args.train_batch
    steps_per_epoch = {"whole_sequence": math.ceil(len(whole_rows) / batch), "prefix": math.ceil(len(prefix_rows) / batch)}
    g = torch.Generator().manual_seed(1)
    n_batches = args.repeats + 1  # the first one warms up
    batches = {regime: [make_batch(rng.choice(rows, batch), max_len, n_items, g) for _ in range(n_batches)]
               for regime, rows in (("whole_sequence", whole_rows), ("prefix", prefix_rows))}
    dropout = {"hidden_dropout_prob": 0.6} if suffix == "video" else {}
    contenders = {
        "LRURec": ("LRURec", "whole_sequence", dict(train_mode="whole_sequence", **dropout)),
        "SASRecWS": ("SASRecWS", "whole_sequence", dict(train_mode="whole_sequence")),
        "SASRec": ("SASRec", "prefix", dict(loss_type="CE")),
        "LRURec:prefix": ("LRURec", "prefix", dict(train_mode="prefix", **dropout)),
    }
    built = {}
    for label, (name, regime, ov) in contenders.items():
        model, config = build_model(name, n_items, MAX_ITEM_LIST_LENGTH=max_len, **ov)
        model.train()
        clip = config["clip_grad_norm"]
        clip = clip.get("max_norm") if isinstance(clip, dict) else None
        built[label] = (model, optimizer_for(model, config), clip, regime, config["learner"])
    times = {label: {"cpu": [], "wall": []} for label in built}
    log(CLAIM, f"steps on {dataset}-shaped batches: B={batch}, L={max_len}, {n_catalogue} items, {steps_per_epoch} steps/epoch")
    for i in range(n_batches):  # round-robin: every contender sees the same load
        for label, (model, opt, clip, regime, _) in built.items():
            inter = batches[regime][i]
            with Clock() as c:
                opt.zero_grad(set_to_none=True)
                model.calculate_loss(inter).backward()
                if clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                opt.step()
            if i > 0:
                times[label]["cpu"].append(c.cpu)
                times[label]["wall"].append(c.wall)
    res = {}
    for label, (_, _, clip, regime, learner) in built.items():
        step = median(times[label]["cpu"])
        res[label] = {"regime": regime, "learner": learner, "grad_clip": clip, "step_cpu_s": step,
                      "step_wall_s": median(times[label]["wall"]), "steps_per_epoch": steps_per_epoch[regime],
                      "epoch_estimate_s": step * steps_per_epoch[regime]}
        log(CLAIM, f"  {label:14s} {regime:15s} step {step:.3f} s cpu x {steps_per_epoch[regime]} = "
                   f"{res[label]['epoch_estimate_s']:.1f} s/epoch")
    out[f"train_step_ratio_sasrec_over_lrurec_{suffix}"] = ratio(res["SASRecWS"]["step_cpu_s"], res["LRURec"]["step_cpu_s"])
    out[f"train_epoch_estimate_ratio_sasrec_over_lrurec_{suffix}"] = ratio(
        res["SASRecWS"]["epoch_estimate_s"], res["LRURec"]["epoch_estimate_s"])
    out[f"train_step_ratio_sasrec_prefix_over_lrurec_prefix_{suffix}"] = ratio(
        res["SASRec"]["step_cpu_s"], res["LRURec:prefix"]["step_cpu_s"])
    del built, batches
    gc.collect()
    return {"batch": batch, "max_len": max_len, "n_items": n_catalogue, "rows": res,
            "whole_sequence_rows": int(len(whole_rows)), "prefix_rows": int(len(prefix_rows)),
            "mean_real_positions_whole_sequence": float(np.mean(whole_rows)),
            "mean_input_length_prefix": float(np.mean(prefix_rows)), "users": int(len(counts))}


def run(args, out, notes, details):
    det = details[CLAIM] = {"summaries": {}, "steps": {}}
    for dataset, (suffix, _) in SUMMARIES.items():
        det["summaries"][dataset] = summary_block(dataset, suffix, args, out, notes)
    if args.summaries_only:
        return
    rng = np.random.default_rng(0)
    for dataset, (suffix, n_catalogue, max_len) in DATASETS.items():
        det["steps"][dataset] = step_times(dataset, suffix, n_catalogue, max_len, args, out, notes, rng)


def markdown(details, fmt):
    det = details.get(CLAIM)
    if not det:
        return []
    lines = ["## Training cost", "", "From the comparison runs under one optimisation protocol (`results/*_fair/<dataset>/summary.json`):", "",
             "| dataset | model | regime | learner | weight decay | s/epoch | s to best | epochs to best | test Recall@10 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for ds, s in det["summaries"].items():
        if not s["rows"]:
            lines.append(f"| {ds} | – | – | – | – | – | – | – | {s['error'] or 'no rows'} |")
        for name, r in s["rows"].items():
            lines.append(f"| {ds} | {name} | {r.get('regime')} | {r.get('learner')} | {fmt(r.get('weight_decay'))} | "
                         f"{fmt(r.get('seconds_per_epoch'))} | {fmt(r.get('seconds_to_best'))} | "
                         f"{fmt(r.get('epochs_to_best'))} | {fmt(r.get('test_recall@10'))} |")
    if det["steps"]:
        lines += ["", "Measured here, one optimizer step on real-shaped batches:", "",
                  "| dataset | model | regime | learner | step (s, cpu) | steps/epoch | epoch estimate (s) |",
                  "|---|---|---|---|---|---|---|"]
        for ds, s in det["steps"].items():
            for name, r in s["rows"].items():
                lines.append(f"| {ds} (B={s['batch']}, L={s['max_len']}, {s['n_items']} items) | {name} | {r['regime']} | "
                             f"{r['learner']} | {fmt(r['step_cpu_s'])} | {r['steps_per_epoch']} | {fmt(r['epoch_estimate_s'])} |")
    return lines + [""]


if __name__ == "__main__":
    sys.exit(claim_main(sys.modules[__name__]))
