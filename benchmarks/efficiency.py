"""Efficiency of LRURec next to SASRec, LinRec and GRU4Rec, measured side by side in one run.

    python benchmarks/efficiency.py                       # everything, writes results/efficiency.{json,md} + PNGs
    python benchmarks/efficiency.py --quick --out /tmp/x  # tiny sizes, a smoke run (well under a minute)
    python benchmarks/efficiency.py --skip long,floor     # leave sections out

Sections (each can be skipped with ``--skip``):

train        Training cost. (a) Seconds per epoch and wall time to the best validation Recall@10, read
             from the comparison harness's ``results/<dataset>/summary.json`` (full training runs are
             too long to redo here): LRURec vs SASRecWS (both whole-sequence), LRURec:prefix vs SASRec
             (both prefix rows) where present. (b) Measured here: one optimizer step (forward, backward,
             clipping as configured, AdamW/Adam update) on synthetic batches shaped like the real
             training batches: lengths drawn from the real per-user counts in
             ``<data_path>/<name>/<name>.inter``, RecBole's leave-one-out split and windowing, random
             item ids; and the per-epoch estimate = steps per epoch x step time.
incremental  Serving one appended item at a time (LRURec paper, Fig. 1 right): a batch of users, one new
             item per user per step, scores over the whole catalogue each step, cumulative time.
             LRURec ``step()``, causal LinRec ``step()``, GRU4Rec's GRU advanced one step with its hidden
             state carried, and SASRec recomputing its forward on the last <= L items (L = 50, 200).
             SASRec's step t costs exactly what a step at history min(t, L) costs, so its cumulative
             curve is the sum of step times measured at a grid of history lengths (linear
             interpolation between them); the first steps are also run for real as a check.
             Also: the multiply-add count per step (scoring included) as the arithmetic bound, and
             LRURec's step time after a 2000-item history vs a 50-item one.
long         One training step (forward + backward, no optimizer update; cross-entropy over all items
             at the LAST position, RecBole's prefix-row loss, so the encoder's growth with N shows
             instead of the scoring's) for N in 50..4000 at batch 8; peak memory in a fresh subprocess
             per point (peak RSS above the RSS before the step; big tensors mmap-ed so freed memory
             leaves the process). Points whose estimated peak exceeds the budget are skipped.
floor        The unavoidable part of a whole-sequence training step (embedding lookup, scoring of every
             real position against all items, cross-entropy) next to LRURec's full step, same batches;
             and a torch.profiler breakdown of LRURec's step.

Every timing runs on one thread (torch.set_num_threads(1)). The machine may be shared, so times are
process CPU seconds (time.process_time: compute actually done, not time spent waiting for a core);
wall-clock seconds are recorded beside them. Ratios come from measurements taken in the same run,
interleaved round-robin where possible.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

SECTIONS = ("train", "incremental", "long", "floor")
DATASETS = {  # name on disk -> (key suffix, catalogue size (items), max length)
    "ml-1m-pos4": ("ml-1m-pos4", 3533, 200),
    "amazon-video-games": ("video", 23715, 50),
}
HEADLINE_KEYS = [
    "train_epoch_ratio_sasrec_over_lrurec_ml-1m-pos4",
    "time_to_best_ratio_sasrec_over_lrurec_ml-1m-pos4",
    "train_epoch_ratio_sasrec_over_lrurec_video",
    "time_to_best_ratio_sasrec_over_lrurec_video",
    "incremental_throughput_ratio_lrurec_over_sasrec_L50",
    "incremental_throughput_ratio_lrurec_over_sasrec_L200",
    "lrurec_step_time_ratio_L2000_over_L50",
    "linrec_over_softmax_time_N2000",
    "linrec_over_softmax_memory_N2000",
    "lrurec_train_step_over_floor_L200",
]
# (key, comparison, threshold, what it means)
TARGETS = [
    ("time_to_best_ratio_sasrec_over_lrurec_ml-1m-pos4", ">=", 3.0, "SASRec time to best / LRURec's"),
    ("time_to_best_ratio_sasrec_over_lrurec_video", ">=", 3.0, "SASRec time to best / LRURec's"),
    ("incremental_throughput_ratio_lrurec_over_sasrec_L50", ">=", 10.0, "incremental throughput vs SASRec, L=50"),
    ("incremental_throughput_ratio_lrurec_over_sasrec_L200", ">=", 40.0, "incremental throughput vs SASRec, L=200"),
    ("lrurec_step_time_ratio_L2000_over_L50", "<=", 1.2, "LRURec step() after 2000 vs 50 items"),
    ("linrec_over_softmax_time_N2000", "<=", 0.33, "LinRec / softmax attention time, N=2000"),
    ("linrec_over_softmax_memory_N2000", "<=", 0.2, "LinRec / softmax attention memory, N=2000"),
    ("lrurec_train_step_over_floor_L200", "<=", 1.5, "LRURec training step / the floor"),
]
POINT_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# ================================================================================================ utils
class Clock:
    """Wall and process-CPU seconds of a block: ``with Clock() as c: ...; c.cpu, c.wall``."""

    def __enter__(self):
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self._w
        self.cpu = time.process_time() - self._c


def median(xs):
    return statistics.median(xs) if xs else None


def ratio(a, b):
    if a is None or b is None or not b:
        return None
    return a / b


def log(msg):
    print(f"[efficiency {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def machine_info():
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average_start": list(os.getloadavg()),
    }
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info["memory_total_gb"] = _meminfo_gb("MemTotal")
    return info


def _meminfo_gb(field):
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return None


def git_commit():
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (commit + ("-dirty" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        return None


# ================================================================================================ models
class _Config(dict):
    """What RecBole models read from a Config: a dict answering None for missing keys."""

    def __getitem__(self, key):
        return self.get(key)


class _Dataset:
    """What SequentialRecommender.__init__ reads from a dataset: the number of item ids."""

    def __init__(self, n_items):
        self.n_items = n_items

    def num(self, field):
        return self.n_items


def _yaml_values(path):
    import yaml

    with open(path) as fh:
        values = yaml.safe_load(fh) or {}
    for key, value in list(values.items()):
        if isinstance(value, str):  # YAML 1.1 reads 1e-12 as a string
            try:
                values[key] = float(value)
            except ValueError:
                pass
    return values


def build_model(name, n_items, max_len, **overrides):
    """A model without a dataset on disk. ``n_items`` counts the padding id 0 (RecBole's n_items).

    Plugin models (LRURec, LinRec, SASRecWS) start from their YAML, RecBole's (SASRec, GRU4Rec) from
    RecBole's; ``overrides`` go last.
    """
    import importlib

    import recbole

    from recbole_lru.registry import MODELS, find_yaml

    if name in MODELS:
        values = _yaml_values(find_yaml("model", name))
        cls = getattr(importlib.import_module(MODELS[name]), name)
    else:
        values = _yaml_values(os.path.join(os.path.dirname(recbole.__file__), "properties", "model", f"{name}.yaml"))
        module = importlib.import_module(f"recbole.model.sequential_recommender.{name.lower()}")
        cls = getattr(module, name)
    config = _Config(values)
    config.update({
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "LIST_SUFFIX": "_list",
        "ITEM_LIST_LENGTH_FIELD": "item_length", "NEG_PREFIX": "neg_", "MAX_ITEM_LIST_LENGTH": max_len,
        "device": "cpu", "train_neg_sample_args": None,
    })
    config.update(overrides)
    if config["layer_norm_eps"] is not None:
        config["layer_norm_eps"] = float(config["layer_norm_eps"])
    torch.manual_seed(0)
    return cls(config, _Dataset(n_items)), config


def optimizer_for(model, config):
    """The optimizer the trainer would build: AdamW + the model's parameter groups for LRURec, else
    RecBole's default Adam (lr 1e-3)."""
    lr = float(config["learning_rate"] or 1e-3)
    wd = float(config["weight_decay"] or 0.0)
    if (config["learner"] or "adam").lower() == "adamw":
        groups = model.optimizer_param_groups(wd) if hasattr(model, "optimizer_param_groups") else model.parameters()
        return torch.optim.AdamW(groups, lr=lr, weight_decay=wd)
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)


def make_batch(lengths, max_len, n_items, generator):
    """Right-padded random item ids with the given real lengths, as RecBole hands them over."""
    from recbole.data.interaction import Interaction

    lengths = torch.as_tensor(np.asarray(lengths), dtype=torch.long)
    B = lengths.numel()
    seq = torch.randint(1, n_items, (B, max_len), generator=generator)
    seq[torch.arange(max_len).unsqueeze(0) >= lengths.unsqueeze(1)] = 0
    target = torch.randint(1, n_items, (B,), generator=generator)
    return Interaction({"item_id_list": seq, "item_length": lengths, "item_id": target})


# ================================================================================================ data shapes
def user_counts(data_path, name):
    """Interactions per user in ``<data_path>/<name>/<name>.inter`` (None when the file is missing)."""
    path = os.path.join(data_path, name, f"{name}.inter")
    if not os.path.exists(path):
        return None
    import pandas as pd

    users = pd.read_csv(path, sep="\t", usecols=[0]).iloc[:, 0]
    return users.value_counts().to_numpy()


def training_rows(counts, max_len):
    """Input lengths of the training rows of both regimes under RecBole's leave-one-out split.

    A user with n interactions has prefix rows i = 1..n-1 (input = the last min(i, L) items before
    item i); the last is the test row, the one before it validation, i = 1..n-3 train. The
    whole-sequence regime keeps the rows ending at i = n-3, n-3-L, ... (windows of L targets, each
    scored at every real position).
    """
    prefix, whole = [], []
    for n in counts:
        m = int(n) - 3
        if m < 1:
            continue
        prefix.append(np.minimum(np.arange(1, m + 1), max_len))
        whole.append(np.minimum(np.arange(m, 0, -max_len), max_len))
    if not prefix:
        return np.ones(1, dtype=np.int64), np.ones(1, dtype=np.int64)
    return np.concatenate(prefix), np.concatenate(whole)


def synthetic_counts(n_users, mean, rng):
    """A stand-in when the dataset file is missing: geometric lengths (>= 5) with the given mean."""
    return 5 + rng.geometric(1.0 / max(1.0, mean - 4), size=n_users)


# ================================================================================================ section 1
def read_summary(results_dir, dataset):
    path = os.path.join(results_dir, dataset, "summary.json")
    if not os.path.exists(path):
        return None, f"{os.path.relpath(path, REPO)} does not exist (the comparison run for {dataset} has not written it yet)"
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
    return models[num_model][field] / models[den_model][field], None


def seconds_to_reach(row, target):
    """Wall seconds until the row's validation Recall@10 first reached ``target`` (None if never)."""
    for point in row.get("curve") or []:
        if point.get("recall@10") is not None and point["recall@10"] >= target:
            return point["seconds"]
    return None


def common_target_ratio(summary, num_model, den_model):
    """Time-to-target ratio where the target is the best validation Recall@10 that both models
    reached (the lower of their two bests): meaningful when a time budget or epoch cap ended a
    run before early stopping did, where time to best is set by the cap rather than the model."""
    models = (summary or {}).get("models") or {}
    rows = [models.get(num_model), models.get(den_model)]
    if any(r is None or r.get("error") or not r.get("curve") for r in rows):
        return None, None
    target = min(max(p["recall@10"] for p in r["curve"] if p.get("recall@10") is not None) for r in rows)
    t_num, t_den = (seconds_to_reach(r, target) for r in rows)
    return (t_num / t_den if t_num and t_den else None), {
        "target_valid_recall@10": target, f"{num_model}_seconds": t_num, f"{den_model}_seconds": t_den,
        "stopped_by": {num_model: rows[0].get("stopped_by"), den_model: rows[1].get("stopped_by")}}


def summary_block(summary, err, out, notes, pairs, common, common_key):
    """One comparison summary's rows (for the details and the table), its ratio keys (``pairs`` of
    (key, numerator row, denominator row, field)) and its time-to-common-target ratio."""
    rows = {}
    for name, row in ((summary or {}).get("models") or {}).items():
        rows[name] = {k: row.get(k) for k in ("regime", "seconds_per_epoch", "seconds_to_best", "epochs_to_best",
                                              "epochs_run", "stopped_by", "error")}
        rows[name]["test_recall@10"] = (row.get("test") or {}).get("recall@10")
    for key, num, den, field in pairs:
        out[key], reason = summary_ratio(summary, err, num, den, field)
        if out[key] is None:
            notes[key] = reason
    out[common_key], info = common_target_ratio(summary, *common)
    return {"rows": rows, "error": err, "common_target": info}


def run_train_section(args, out, notes, details):
    details["train"] = {"summaries": {}}
    # (a) the comparison harness's full runs
    for dataset, (suffix, _, _) in DATASETS.items():
        summary, err = read_summary(args.results_dir, dataset)
        pairs = [
            (f"train_epoch_ratio_sasrec_over_lrurec_{suffix}", "SASRecWS", "LRURec", "seconds_per_epoch"),
            (f"time_to_best_ratio_sasrec_over_lrurec_{suffix}", "SASRecWS", "LRURec", "seconds_to_best"),
            (f"train_epoch_ratio_sasrec_over_lrurec_prefix_{suffix}", "SASRec", "LRURec:prefix", "seconds_per_epoch"),
            (f"time_to_best_ratio_sasrec_over_lrurec_prefix_{suffix}", "SASRec", "LRURec:prefix", "seconds_to_best"),
            (f"time_to_best_ratio_sasrec_prefix_over_lrurec_{suffix}", "SASRec", "LRURec", "seconds_to_best"),
        ]
        details["train"]["summaries"][dataset] = summary_block(
            summary, err, out, notes, pairs, ("SASRecWS", "LRURec"),
            f"time_to_common_target_ratio_sasrec_over_lrurec_{suffix}")

    # (a') RecBole's prefix regime on ml-100k: stock SASRec against LRURec:prefix, in their own folder
    summary, err = read_summary(os.path.join(args.results_dir, "prefix_regime"), "ml-100k")
    pairs = [("train_epoch_ratio_sasrec_over_lrurec_prefix_ml-100k", "SASRec", "LRURec:prefix", "seconds_per_epoch"),
             ("time_to_best_ratio_sasrec_over_lrurec_prefix_ml-100k", "SASRec", "LRURec:prefix", "seconds_to_best")]
    details["train"]["summaries"]["ml-100k (prefix)"] = summary_block(
        summary, err, out, notes, pairs, ("SASRec", "LRURec:prefix"),
        "time_to_common_target_ratio_sasrec_over_lrurec_prefix_ml-100k")

    # (b) step times measured here
    if args.train_summaries_only:
        return
    details["train"]["steps"] = {}
    rng = np.random.default_rng(0)
    for dataset, (suffix, n_catalogue, max_len) in DATASETS.items():
        if args.quick:
            n_catalogue, max_len = args.quick_items, args.quick_len
        n_items = n_catalogue + 1
        counts = None if args.quick else user_counts(args.data_path, dataset)
        if counts is None:
            counts = synthetic_counts(200 if args.quick else 5000, 10 if "video" in suffix else 95, rng)
            if not args.quick:
                notes[f"train_step_ratio_sasrec_over_lrurec_{suffix}"] = (
                    f"{dataset}.inter not found under {args.data_path}: synthetic lengths used")
        prefix_rows, whole_rows = training_rows(counts, max_len)
        batch = args.train_batch
        steps_per_epoch = {"whole_sequence": math.ceil(len(whole_rows) / batch),
                           "prefix": math.ceil(len(prefix_rows) / batch)}
        g = torch.Generator().manual_seed(1)
        n_batches = args.repeats + 1  # the first one warms up
        batches = {
            "whole_sequence": [make_batch(rng.choice(whole_rows, batch), max_len, n_items, g) for _ in range(n_batches)],
            "prefix": [make_batch(rng.choice(prefix_rows, batch), max_len, n_items, g) for _ in range(n_batches)],
        }
        dropout = {"hidden_dropout_prob": 0.6} if suffix == "video" else {}
        contenders = {
            "LRURec": ("LRURec", "whole_sequence", dict(train_mode="whole_sequence", **dropout)),
            "SASRecWS": ("SASRecWS", "whole_sequence", dict(train_mode="whole_sequence")),
            "SASRec": ("SASRec", "prefix", dict(loss_type="CE")),
            "LRURec:prefix": ("LRURec", "prefix", dict(train_mode="prefix", **dropout)),
        }
        built = {}
        for label, (name, regime, ov) in contenders.items():
            model, config = build_model(name, n_items, max_len, **ov)
            model.train()
            clip = (config["clip_grad_norm"] or {}).get("max_norm") if isinstance(config["clip_grad_norm"], dict) else None
            built[label] = (model, optimizer_for(model, config), clip, regime)
        times = {label: {"cpu": [], "wall": []} for label in built}
        log(f"train steps on {dataset}-shaped batches: B={batch}, L={max_len}, {n_catalogue} items, "
            f"{steps_per_epoch} steps/epoch")
        for i in range(n_batches):  # round-robin: every contender sees the same load
            for label, (model, opt, clip, regime) in built.items():
                inter = batches[regime][i]
                with Clock() as c:
                    opt.zero_grad(set_to_none=True)
                    loss = model.calculate_loss(inter)
                    loss.backward()
                    if clip:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                    opt.step()
                if i > 0:
                    times[label]["cpu"].append(c.cpu)
                    times[label]["wall"].append(c.wall)
        res = {}
        for label, (_, _, clip, regime) in built.items():
            step = median(times[label]["cpu"])
            res[label] = {"regime": regime, "step_cpu_s": step, "step_wall_s": median(times[label]["wall"]),
                          "steps_per_epoch": steps_per_epoch[regime],
                          "epoch_estimate_s": step * steps_per_epoch[regime], "grad_clip": clip}
        details["train"]["steps"][dataset] = {
            "batch": batch, "max_len": max_len, "n_items": n_catalogue, "rows": res,
            "whole_sequence_rows": int(len(whole_rows)), "prefix_rows": int(len(prefix_rows)),
            "mean_real_positions_whole_sequence": float(np.mean(whole_rows)),
            "mean_input_length_prefix": float(np.mean(prefix_rows)),
            "users": int(len(counts)),
        }
        out[f"train_step_ratio_sasrec_over_lrurec_{suffix}"] = ratio(res["SASRecWS"]["step_cpu_s"], res["LRURec"]["step_cpu_s"])
        out[f"train_epoch_estimate_ratio_sasrec_over_lrurec_{suffix}"] = ratio(
            res["SASRecWS"]["epoch_estimate_s"], res["LRURec"]["epoch_estimate_s"])
        out[f"train_step_ratio_sasrec_prefix_over_lrurec_prefix_{suffix}"] = ratio(
            res["SASRec"]["step_cpu_s"], res["LRURec:prefix"]["step_cpu_s"])
        out[f"train_epoch_estimate_ratio_sasrec_prefix_over_lrurec_{suffix}"] = ratio(
            res["SASRec"]["epoch_estimate_s"], res["LRURec"]["epoch_estimate_s"])
        for label, r in res.items():
            log(f"  {label:14s} {r['regime']:15s} step {r['step_cpu_s']:.3f} s cpu "
                f"({r['step_wall_s']:.3f} wall) x {r['steps_per_epoch']} = {r['epoch_estimate_s']:.1f} s/epoch")
        del built, batches
        gc.collect()


# ================================================================================================ section 2
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
        log(f"  [{tag}] {label:12s} {kind:8s} {row['total_cpu_s']:8.2f} s cpu over {T} steps "
            f"({row['per_step_ms_median']:.2f} ms/step median)")

    with torch.no_grad():
        # LRURec: step() carries one complex state per block
        lru, _ = build_model("LRURec", n_items, 200, hidden_size=d)
        lru.eval()
        lru_dims = (d, lru.state_size, lru.inner_size, lru.n_layers)
        # LinRec, causal: step() carries the running sums of k v^T per layer
        lin, _ = build_model("LinRec", n_items, 200, hidden_size=d, n_heads=args.heads, inner_size=4 * d,
                             causal=True, train_mode="whole_sequence")
        lin.eval()
        # GRU4Rec: its GRU advanced one step with the hidden state carried, then its dense layer, then scoring
        gru, _ = build_model("GRU4Rec", n_items, 200, embedding_size=d, hidden_size=d, loss_type="CE")
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
            sas, _ = build_model("SASRec", n_items, L, hidden_size=d, n_heads=args.heads, inner_size=4 * d,
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


def run_incremental_section(args, out, notes, details):
    catalogues = [("ml-1m-pos4", DATASETS["ml-1m-pos4"][1])]
    if not args.skip_video_incremental:
        catalogues.append(("video", DATASETS["amazon-video-games"][1]))
    if args.quick:
        catalogues = [(tag, args.quick_items) for tag, _ in catalogues]
    results = {}
    for tag, n_catalogue in catalogues:
        log(f"incremental inference, {tag} catalogue ({n_catalogue} items), B={args.inc_batch}, "
            f"{args.inc_steps} steps")
        results[tag] = res = run_incremental_catalogue(args, n_catalogue, tag, details)
        lru_total = res["models"]["LRURec"]["total_cpu_s"]
        suffix = "" if tag == "ml-1m-pos4" else f"_{tag}"
        for L in args.sasrec_lengths:
            name = args.key_lengths.get(L, L)  # quick runs stand small lengths in for 50 and 200
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
        if L not in [args.key_lengths.get(x, x) for x in args.sasrec_lengths]:
            notes[f"incremental_throughput_ratio_lrurec_over_sasrec_L{L}"] = f"L={L} not run (--sasrec-lengths)"
            out.setdefault(f"incremental_throughput_ratio_lrurec_over_sasrec_L{L}", None)

    # LRURec step() after a long history vs a short one: the state has a fixed size
    n_items = (args.quick_items if args.quick else DATASETS["ml-1m-pos4"][1]) + 1
    B = args.inc_batch
    long_len, short_len = (200, 50) if args.quick else (2000, 50)
    with torch.no_grad():
        lru, _ = build_model("LRURec", n_items, long_len, hidden_size=args.hidden)
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


# ================================================================================================ section 3
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
    model, _ = build_model(name, n_items, N, **ov)
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
           "--repeats", str(args.long_repeats), "--long-items", str(args.long_items)]
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


def run_long_section(args, out, notes, details):
    models = ["LRURec", "LinRec", "LinRec-causal", "SASRec"]
    avail = _meminfo_gb("MemAvailable")
    budget = args.memory_budget_gb if avail is None else min(args.memory_budget_gb, 0.7 * avail)
    points = []
    log(f"long sequences: N in {args.long_lengths}, batch {args.long_batch}, budget {budget:.1f} GB")
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
                log(f"  {model_name:13s} N={N:5d} step {p['step_cpu_s']:.3f} s cpu, peak +{p['peak_mem_mb']:.0f} MB")
            else:
                log(f"  {model_name:13s} N={N:5d} {p['status']}: {p.get('reason')}")
    details["long"] = {"batch": args.long_batch, "hidden": args.hidden, "heads": args.heads,
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


# ================================================================================================ section 4
def run_floor_section(args, out, notes, details):
    from recbole_lru.data import next_item_labels

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
        lru, _ = build_model("LRURec", n_items, max_len, hidden_size=args.hidden, train_mode="whole_sequence")
        lru.train()
        # the floor: its own embedding table and bias, the same scoring and loss as LRURec's
        emb = torch.nn.Embedding(n_items, args.hidden, padding_idx=0)
        bias = torch.nn.Parameter(torch.zeros(n_items))

        def floor_loss(inter):
            seq, lens = inter["item_id_list"], inter["item_length"]
            labels = next_item_labels(seq, lens, inter["item_id"])
            real = labels > 0
            h = emb(seq)[real]
            return F.cross_entropy(torch.addmm(bias, h, emb.weight.t()), labels[real])

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
        log(f"  floor {dataset}: floor {r['floor']:.3f} s, LRURec {r['LRURec']:.3f} s, "
            f"LRURec on the padded grid {r['LRURec_padded_grid']:.3f} s (cpu); LRURec/floor per batch "
            f"{min(paired):.2f}..{max(paired):.2f}, median {median(paired):.2f}")
        if dataset == "ml-1m-pos4":
            res["profile"] = profile_lrurec_step(lru, batches[1], args)
        del lru
        gc.collect()
    if args.quick:
        notes["lrurec_train_step_over_floor_L200"] = f"quick run: L={args.quick_len}, {args.quick_items} items"
    details["floor"] = res


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


# ================================================================================================ report
def check_target(value, op, threshold):
    if value is None:
        return "n/a"
    return "pass" if (value >= threshold if op == ">=" else value <= threshold) else "miss"


def fmt(v, spec="{:.3g}"):
    if v is None:
        return "–"
    if isinstance(v, float):
        return spec.format(v)
    return str(v)


def render_markdown(result):
    out, notes, det = result, result["notes"], result["details"]
    lines = ["# Efficiency: LRURec next to SASRec, LinRec and GRU4Rec", ""]
    lines += [f"Command: `{result['command']}`  ", f"Commit: `{result['git_commit']}`  ",
              f"Machine: {result['machine'].get('cpu_model', result['machine']['processor'])}, "
              f"{result['machine']['cpu_count']} cores, torch {result['machine']['torch']}, 1 thread; "
              f"load average {result['machine']['load_average_start'][0]:.1f} at start, "
              f"{result['machine'].get('load_average_end', [float('nan')])[0]:.1f} at end (shared machine: times are "
              f"process CPU seconds).", ""]
    if result.get("quick"):
        lines += ["**Quick run (tiny sizes): the numbers below are a smoke test, not measurements.**", ""]

    lines += ["## Targets", "", "| key | value | target | status | meaning |", "|---|---|---|---|---|"]
    for key, op, thr, meaning in TARGETS:
        v = out.get(key)
        lines.append(f"| `{key}` | {fmt(v)} | {op} {thr} | {check_target(v, op, thr)} | {meaning} |")
    lines.append("")

    lines += ["## Headline keys", "", "| key | value | note |", "|---|---|---|"]
    for key in HEADLINE_KEYS:
        lines.append(f"| `{key}` | {fmt(out.get(key))} | {notes.get(key, '')} |")
    lines.append("")

    tr = det.get("train")
    if tr:
        lines += ["## 1. Training", "", "### From the comparison runs (`results/<dataset>/summary.json`)", ""]
        lines += ["| dataset | model | regime | s/epoch | s to best | epochs to best | test Recall@10 |",
                  "|---|---|---|---|---|---|---|"]
        for ds, s in tr["summaries"].items():
            if not s["rows"]:
                lines.append(f"| {ds} | – | – | – | – | – | {s['error'] or 'no model rows yet'} |")
            for name, row in s["rows"].items():
                lines.append(f"| {ds} | {name} | {row.get('regime')} | {fmt(row.get('seconds_per_epoch'))} | "
                             f"{fmt(row.get('seconds_to_best'))} | {fmt(row.get('epochs_to_best'))} | "
                             f"{fmt(row.get('test_recall@10'))} |")
        lines += ["", "### Measured here: one optimizer step on real-shaped batches", ""]
        lines += ["| dataset | model | regime | step (s, cpu) | steps/epoch | epoch estimate (s) |",
                  "|---|---|---|---|---|---|"]
        for ds, s in tr["steps"].items():
            for name, row in s["rows"].items():
                lines.append(f"| {ds} (B={s['batch']}, L={s['max_len']}, {s['n_items']} items) | {name} | "
                             f"{row['regime']} | {fmt(row['step_cpu_s'])} | {row['steps_per_epoch']} | "
                             f"{fmt(row['epoch_estimate_s'])} |")
        lines += ["", "Rows per epoch from the per-user counts of the real files (synthetic in quick runs): " + "; ".join(
            f"{ds}: {s['whole_sequence_rows']} whole-sequence windows (mean {s['mean_real_positions_whole_sequence']:.1f} "
            f"real positions of {s['max_len']}), {s['prefix_rows']} prefix rows" for ds, s in tr["steps"].items()), ""]
        lines += ["| ratio | value | note |", "|---|---|---|"]
        for key in sorted(k for k in out if k.startswith(("train_", "time_to_best", "time_to_common"))):
            lines.append(f"| `{key}` | {fmt(out.get(key))} | {notes.get(key, '')} |")
        lines.append("")

    inc = det.get("incremental")
    if inc:
        lines += ["## 2. Incremental inference", "",
                  "Cumulative CPU seconds to append one item per user and score the whole catalogue, "
                  "step after step (`incremental_inference.png`). SASRec rows are the sum of its step times "
                  "timed at a grid of history lengths (a step at time t costs what a step at history "
                  "min(t, L) costs); `check` is measured/modelled over the first steps run for real.", ""]
        lines += ["| catalogue | model | total (s) | ms/step (median) | MACs/step/user | check |",
                  "|---|---|---|---|---|---|"]
        for tag, res in inc.items():
            if not isinstance(res, dict) or "models" not in res:
                continue
            b = res["bounds"]
            for name, row in res["models"].items():
                macs = {"LRURec": b["LRURec_macs_per_step"], "GRU4Rec": b["GRU4Rec_macs_per_step"],
                        "LinRec": b["LinRec_macs_per_step"]}.get(name)
                if name.startswith("SASRec-L"):
                    macs = b[f"SASRec_{name.split('-')[1]}_macs_per_step_steady"]
                lines.append(f"| {tag} ({res['n_items']} items, B={res['batch']}, {res['steps']} steps) | {name} | "
                             f"{fmt(row['total_cpu_s'])} | {fmt(row['per_step_ms_median'])} | "
                             f"{fmt(macs, '{:,.0f}') if macs else '–'} | {fmt(row.get('check_measured_over_modelled'))} |")
        lines += ["", "| ratio | value |", "|---|---|"]
        for key in sorted(k for k in out if k.startswith(("incremental_", "lrurec_step_time"))):
            lines.append(f"| `{key}` | {fmt(out.get(key))} |")
        h = inc.get("lrurec_history_length")
        if h:
            lines += ["", f"LRURec `step()` after {h['long']} items: {h['step_ms_long']:.2f} ms; after {h['short']}: "
                      f"{h['step_ms_short']:.2f} ms (batch {h['batch']}, state of {h['state_numel_per_user']} "
                      f"complex numbers per user whatever the history)."]
        lines.append("")

    lg = det.get("long")
    if lg:
        lines += ["## 3. Long sequences", "",
                  f"One training step (forward + backward, {lg['loss']}), batch {lg['batch']}, hidden {lg['hidden']}, "
                  f"{lg['n_items']} items; peak memory above the RSS before the step, fresh process per point "
                  f"(`long_sequences.png`). Memory budget {lg['budget_gb']:.1f} GB.", "",
                  "| model | N | step (s, cpu) | peak memory (MB) | status |", "|---|---|---|---|---|"]
        for p in lg["points"]:
            lines.append(f"| {p['model']} | {p['N']} | {fmt(p.get('step_cpu_s'))} | {fmt(p.get('peak_mem_mb'), '{:.0f}')} | "
                         f"{p['status']}{': ' + p['reason'] if p.get('reason') else ''} |")
        lines += ["", "| ratio over SASRec | " + " | ".join(f"N={p}" for p in sorted({p['N'] for p in lg['points']}))
                  + " |", "|---|" + "---|" * len({p['N'] for p in lg['points']})]
        for tag in ("lrurec", "linrec", "linrec_causal"):
            for kind in ("step_time", "memory"):
                vals = [out.get(f"long_{kind}_ratio_{tag}_over_sasrec_N{n}") for n in sorted({p['N'] for p in lg['points']})]
                lines.append(f"| {tag} {kind.replace('_', ' ')} | " + " | ".join(fmt(v) for v in vals) + " |")
        src = det.get("linear_attention_source", {})
        lines += ["", f"Attention layer alone (LinRec vs softmax, N=2000): "
                      f"{'from ' + src['file'] if src.get('file') else 'measured here'} "
                      f"{json.dumps(src.get('config')) if src.get('config') else ''}", ""]

    fl = det.get("floor")
    if fl:
        lines += ["## 4. The floor", "",
                  "The unavoidable part of a whole-sequence step: embedding lookup, scoring every real position "
                  "against all items (+ item bias), cross-entropy; forward + backward, same batches as LRURec. "
                  "`LRURec_padded_grid` runs the same LRURec layers on the whole padded (B, L) grid, i.e. the "
                  "encoder before it was changed to run its per-position layers on the real positions only.", "",
                  "LRURec/floor is the median over the batches of the ratio on the same batch (each pair timed back "
                  "to back, so a change of machine load cancels); the range is over the batches.", "",
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
            lines += ["", f"### Profile of one LRURec step (ml-1m-pos4 shape), top operators by self CPU time "
                          f"(total {prof['total_self_cpu_ms']:.0f} ms under the profiler)", "",
                      "| op | self CPU (ms) | share | calls |", "|---|---|---|---|"]
            for o in prof["top_ops"]:
                lines.append(f"| `{o['op']}` | {o['self_cpu_ms']:.1f} | {o['share'] * 100:.1f}% | {o['calls']} |")
            am = prof["anomaly_mode"]
            lines += ["", f"Autograd anomaly mode (switched on for the whole process by RecBole's "
                          f"`recbole/model/sequential_recommender/sine.py` at import; `recbole_lru.compat.no_anomaly_mode` "
                          f"switches it off again): with it on, the same step takes {fmt(am['step_cpu_s_on'])} s "
                          f"(off: {fmt(am['step_cpu_s_off'])} s, medians of {am['repeats']} alternated); "
                          f"under the profiler `aten::ne` + `aten::any` are "
                          f"{fmt((am['ne_any_share_of_step_when_on'] or 0) * 100, '{:.0f}')}% of it, called from: "
                      + ", ".join(f"`{k}` x{v}" for k, v in am["ne_any_parents"].items()) + "."]
        lines.append("")

    if result.get("findings"):
        lines += ["## Targets missed or not measured", ""] + [f"- {f}" for f in result["findings"]] + [""]
    if result.get("observations"):
        lines += ["## Observations", ""] + [f"- {f}" for f in result["observations"]] + [""]
    if notes:
        lines += ["## Notes", ""] + [f"- `{k}`: {v}" for k, v in notes.items()] + [""]
    return "\n".join(lines)


def _budget_note(det, suffix, out):
    """What a time budget did to the time-to-best comparison of one dataset, in words."""
    dataset = {v[0]: k for k, v in DATASETS.items()}.get(suffix)
    summ = ((det.get("train") or {}).get("summaries") or {}).get(dataset) or {}
    rows = summ.get("rows") or {}
    capped = [m for m in ("LRURec", "SASRecWS") if (rows.get(m) or {}).get("stopped_by") in ("time_budget", "epoch_cap")]
    if not capped:
        return ""
    ct = summ.get("common_target") or {}
    return (f" {' and '.join(capped)} stopped at the time budget or epoch cap while still improving, so time to best "
            f"measures the cap more than the model. Time to reach the best validation Recall@10 both models reached "
            f"({fmt(ct.get('target_valid_recall@10'))}): SASRecWS {fmt(ct.get('SASRecWS_seconds'), '{:.0f}')} s, "
            f"LRURec {fmt(ct.get('LRURec_seconds'), '{:.0f}')} s, ratio "
            f"{fmt(out.get('time_to_common_target_ratio_sasrec_over_lrurec_' + suffix))}.")


def findings(result):
    """Short explanations, with numbers, for every target missed and the main observations."""
    out, det, f = result, result["details"], []
    for key, op, thr, meaning in TARGETS:
        v = out.get(key)
        status = check_target(v, op, thr)
        if status == "pass":
            continue
        if key.startswith("time_to_best"):
            suffix = key.rsplit("_", 1)[-1]
            if v is None:
                f.append(f"`{key}` not available: {out['notes'].get(key)}.")
            else:
                f.append(f"`{key}` = {v:.2f} < {thr}: from the comparison runs; see the per-step and per-epoch "
                         f"rows (step ratio {fmt(out.get('train_step_ratio_sasrec_over_lrurec_' + suffix))}, "
                         f"epochs to best differ between models).{_budget_note(det, suffix, out)}")
        elif key.startswith("incremental") and v is not None:
            L = key.rsplit("L", 1)[-1]
            f.append(f"`{key}` = {v:.1f} < {thr}: the multiply-add bound is "
                     f"{fmt(out.get('incremental_bound_ratio_L' + L))}x; measured/bound = "
                     f"{fmt(out.get('incremental_measured_over_bound_L' + L))}. LRURec's step is a handful of small "
                     f"(batch x 64) matrix products whose per-call overhead weighs more than SASRec's larger ones.")
        elif key == "lrurec_train_step_over_floor_L200" and v is not None:
            fl = det.get("floor", {}).get("ml-1m-pos4", {})
            s = fl.get("step_cpu_s", {})
            macs = fl.get("macs_per_real_position", {})
            share = ratio(macs.get("encoder_matmuls"), macs.get("scoring"))
            f.append(f"`{key}` = {v:.2f} > {thr}: floor {fmt(s.get('floor'))} s vs LRURec {fmt(s.get('LRURec'))} s "
                     f"(on the padded grid, before the encoder ran its per-position layers on the real positions "
                     f"only: {fmt(s.get('LRURec_padded_grid'))} s). The encoder's matrix products alone are "
                     f"{fmt(share * 100 if share else None, '{:.0f}')}% of the scoring's multiply-adds per real "
                     f"position (B, C and the PFFN of {det['floor']['ml-1m-pos4'].get('n_layers', 2)} blocks at hidden "
                     f"{det['floor']['ml-1m-pos4'].get('hidden')} against {fl.get('n_items')} scored items); with its "
                     f"7 dropout masks (bernoulli), 5 LayerNorms, GELU and the scan on top, a ratio near 1.5 is "
                     f"close to what the arithmetic allows on this CPU (per-batch range "
                     f"{fmt(min(fl.get('paired_ratios') or [0]))}..{fmt(max(fl.get('paired_ratios') or [0]))}).")
        elif v is None:
            f.append(f"`{key}` not measured: {out['notes'].get(key, 'section skipped')}.")
        else:
            f.append(f"`{key}` = {v:.3g} misses {op} {thr}.")
    return f


def observations(result):
    """The main measured facts beside the targets, in numbers."""
    out, det, obs = result, result["details"], []
    fl = det.get("floor", {})
    prof = fl.get("profile")
    if prof:
        am = prof["anomaly_mode"]
        obs.append(f"Autograd anomaly mode, which RecBole's sine.py switches on for the whole process at import, "
                   f"costs {fmt(ratio(am['step_cpu_s_on'], am['step_cpu_s_off']))}x on LRURec's training step "
                   f"({fmt(am['step_cpu_s_on'])} s vs {fmt(am['step_cpu_s_off'])} s): it runs isnan + any over every "
                   f"backward output, which is where the aten::ne / aten::any calls came from "
                   f"({fmt((am['ne_any_share_of_step_when_on'] or 0) * 100, '{:.0f}')}% of the step under the "
                   f"profiler). The plugin switches it off again at import (recbole_lru.compat.no_anomaly_mode).")
        bern = next((o for o in prof["top_ops"] if o["op"] == "aten::bernoulli_"), None)
        if bern:
            ml = fl.get("ml-1m-pos4", {})
            frac = ml.get("mean_real_positions", 0) / ml.get("max_len", 1)
            obs.append(f"Dropout masks: aten::bernoulli_ is {bern['share'] * 100:.0f}% of LRURec's step "
                       f"({bern['calls']} masks); they are drawn at the real positions only "
                       f"({frac * 100:.0f}% of the padded grid on ml-1m-pos4). Drawing them as rand() < p would "
                       f"halve their cost again, at the price of a different random stream than nn.Dropout.")
    for ds, r in fl.items():
        if ds == "profile":
            continue
        s_ = r["step_cpu_s"]
        obs.append(f"{ds}: running embedding, projections, dropout, LayerNorm and PFFN on the real positions only "
                   f"({r['mean_real_positions']:.1f} of {r['max_len']} on average) instead of the padded grid: "
                   f"{fmt(s_['LRURec_padded_grid'])} s -> {fmt(s_['LRURec'])} s per step "
                   f"({fmt(ratio(s_['LRURec_padded_grid'], s_['LRURec']))}x).")
    tr = det.get("train", {}).get("steps", {})
    for ds, st in tr.items():
        rows = st["rows"]
        obs.append(f"{ds}: one epoch of SASRec on RecBole's prefix rows ({st['prefix_rows']} rows) is estimated at "
                   f"{fmt(rows['SASRec']['epoch_estimate_s'])} s vs {fmt(rows['LRURec']['epoch_estimate_s'])} s for "
                   f"LRURec whole-sequence ({st['whole_sequence_rows']} windows) and "
                   f"{fmt(rows['SASRecWS']['epoch_estimate_s'])} s for SASRecWS; per step SASRecWS/LRURec = "
                   f"{fmt(ratio(rows['SASRecWS']['step_cpu_s'], rows['LRURec']['step_cpu_s']))}.")
    inc = det.get("incremental", {})
    ml = inc.get("ml-1m-pos4")
    if ml and "LRURec" in ml.get("models", {}):
        m = ml["models"]
        obs.append(f"Incremental, ml-1m-pos4 catalogue: LRURec {m['LRURec']['per_step_ms_median']:.2f} ms per step for "
                   f"{ml['batch']} users vs GRU4Rec {m['GRU4Rec']['per_step_ms_median']:.2f} ms and causal LinRec "
                   f"{m['LinRec']['per_step_ms_median']:.2f} ms; against SASRec the measured ratios sit at "
                   + ", ".join(f"{fmt(out.get(f'incremental_measured_over_bound_L{L}'))}x the multiply-add bound "
                               f"(L={L}, bound {fmt(out.get(f'incremental_bound_ratio_steady_L{L}'))}x per step)"
                               for L in (50, 200) if out.get(f"incremental_measured_over_bound_L{L}") is not None)
                   + " (attention's softmax, masks and copies are not multiply-adds).")
    return obs


# ================================================================================================ main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, a smoke run")
    p.add_argument("--out", default=os.path.join(REPO, "results"), help="where to write json, md and PNGs")
    p.add_argument("--results-dir", default=os.path.join(REPO, "results"),
                   help="where the comparison summaries and linear_attention_benchmark.json are read")
    p.add_argument("--data-path", default=os.path.abspath(os.path.join(REPO, "..", "shared", "datasets")))
    p.add_argument("--skip", default="", help=f"comma-separated sections to leave out: {','.join(SECTIONS)}")
    p.add_argument("--merge", action="store_true",
                   help="keep the keys of an existing <out>/efficiency.json for everything this run does not measure")
    p.add_argument("--train-summaries-only", action="store_true",
                   help="in the train section, only read the comparison summaries (no step timing)")
    p.add_argument("--repeats", type=int, help="timed repeats per measurement (default 3, quick 1)")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--heads", type=int, default=2, help="attention heads of SASRec / LinRec (RecBole's SASRec: 2)")
    p.add_argument("--train-batch", type=int, default=128)
    p.add_argument("--inc-batch", type=int, default=128)
    p.add_argument("--inc-steps", type=int, default=2048)
    p.add_argument("--inc-check-steps", type=int, default=64, help="SASRec steps run for real as a check")
    p.add_argument("--inc-rounds", type=int, default=8, help="chunks the stepping models' steps are run in")
    p.add_argument("--grid-repeats", type=int, default=8, help="timed passes over each SASRec history-length grid")
    p.add_argument("--sasrec-lengths", type=int, nargs="+", default=[50, 200])
    p.add_argument("--skip-video-incremental", action="store_true")
    p.add_argument("--step-repeats", type=int, default=100)
    p.add_argument("--long-lengths", type=int, nargs="+", default=[50, 200, 1000, 2000, 4000])
    p.add_argument("--long-batch", type=int, default=8)
    p.add_argument("--long-items", type=int, default=DATASETS["ml-1m-pos4"][1])
    p.add_argument("--long-repeats", type=int, default=2)
    p.add_argument("--memory-budget-gb", type=float, default=8.0)
    p.add_argument("--point-timeout", type=float, default=600)
    p.add_argument("--floor-repeats", type=int, default=9)
    p.add_argument("--profile-top", type=int, default=15)
    p.add_argument("--anomaly-repeats", type=int, default=3)
    p.add_argument("--_long-point", nargs=2, metavar=("MODEL", "N"), help=argparse.SUPPRESS)
    p.add_argument("--_attn-point", nargs=3, metavar=("IMPL", "N", "BATCH"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.quick_items, args.quick_len = 300, 24
    args.key_lengths = {}
    if args.quick:
        args.repeats = args.repeats or 1
        args.inc_steps = min(args.inc_steps, 24)
        args.inc_batch = min(args.inc_batch, 8)
        args.inc_check_steps = min(args.inc_check_steps, 8)
        args.inc_rounds, args.grid_repeats = 2, 1
        args.train_batch = min(args.train_batch, 16)
        if args.sasrec_lengths == [50, 200]:
            args.sasrec_lengths = [8, 16]
            args.key_lengths = {8: 50, 16: 200}
        args.step_repeats = min(args.step_repeats, 5)
        args.long_lengths = [16, 64] if args.long_lengths == [50, 200, 1000, 2000, 4000] else args.long_lengths
        args.long_batch = min(args.long_batch, 2)
        args.long_items = min(args.long_items, 300)
        args.long_repeats = 1
        args.floor_repeats = 1
        args.hidden = min(args.hidden, 16)
        args.profile_top = min(args.profile_top, 8)
        args.anomaly_repeats = 1
    args.repeats = args.repeats or 3
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = args.skip - set(SECTIONS)
    if unknown:
        p.error(f"--skip: unknown section(s) {sorted(unknown)}; valid: {','.join(SECTIONS)}")
    return args


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)
    import recbole_lru  # noqa: F401  (registers the plugin models; switches RecBole's anomaly mode off)

    # RecBole's sine.py turns autograd anomaly mode on when its sequential models are imported; the
    # plugin switches it off at import. Keep it off for every measurement (and say so).
    import recbole.model.sequential_recommender  # noqa: F401

    anomaly_at_start = torch.is_anomaly_enabled()
    torch.autograd.set_detect_anomaly(False)

    if args._long_point:
        model, n = args._long_point
        print(json.dumps(long_point(model, int(n), args.long_batch, args.long_items + 1, args.hidden, args.heads,
                                    args.long_repeats)))
        return 0
    if args._attn_point:
        impl, n, batch = args._attn_point
        print(json.dumps(attention_point(impl, int(n), int(batch))))
        return 0

    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    out, notes, details = {}, {}, {}
    result = {"machine": machine_info(), "command": "python " + " ".join(
        [os.path.relpath(os.path.abspath(__file__), REPO)] + (sys.argv[1:] if argv is None else list(argv))),
        "git_commit": git_commit(), "quick": args.quick}
    result["machine"]["anomaly_mode_enabled_at_start"] = anomaly_at_start
    sections = {"train": run_train_section, "incremental": run_incremental_section,
                "long": run_long_section, "floor": run_floor_section}
    timings = {}
    for name in SECTIONS:
        if name in args.skip:
            for key in HEADLINE_KEYS:
                if out.get(key) is None and key not in notes and _section_of(key) == name:
                    notes[key] = f"section '{name}' skipped (--skip)"
            continue
        log(f"section {name}")
        s0 = time.perf_counter()
        sections[name](args, out, notes, details)
        timings[name] = time.perf_counter() - s0
    json_path = os.path.join(args.out, "efficiency.json")
    if args.merge and os.path.exists(json_path):
        with open(json_path) as fh:
            prev = json.load(fh)
        merged = {k: v for k, v in prev.items() if k not in META_KEYS}
        merged.update(out)
        prev_notes = {k: v for k, v in (prev.get("notes") or {}).items() if k not in out}
        prev_notes.update({k: v for k, v in notes.items() if k not in merged or merged[k] is None})
        out, notes = merged, prev_notes
        merged_details = prev.get("details") or {}
        for k, v in details.items():
            if isinstance(v, dict) and isinstance(merged_details.get(k), dict):
                merged_details[k].update(v)
            else:
                merged_details[k] = v
        details = merged_details
        result["previous_runs"] = (prev.get("previous_runs") or []) + [
            {"command": prev.get("command"), "git_commit": prev.get("git_commit"),
             "sections": sorted((prev.get("section_seconds") or {}).keys())}]
    for key in HEADLINE_KEYS:
        out.setdefault(key, None)
        if out[key] is None and key not in notes:
            notes[key] = "not measurable in this run"
    notes = {k: v for k, v in notes.items() if out.get(k) is None or k.startswith("lrurec_step_time")
             or "quick" in v or "synthetic" in v}
    result["machine"]["load_average_end"] = list(os.getloadavg())
    result.update({k: out[k] for k in HEADLINE_KEYS})
    result.update({k: v for k, v in out.items() if k not in HEADLINE_KEYS})
    result["notes"] = notes
    result["section_seconds"] = timings
    result["total_seconds"] = time.perf_counter() - t0
    result["details"] = details
    result["targets"] = {key: {"op": op, "threshold": thr, "status": check_target(out.get(key), op, thr)}
                         for key, op, thr, _ in TARGETS}
    result["findings"] = findings(result)
    result["observations"] = observations(result)
    compact_series(details)
    with open(json_path, "w") as fh:
        json.dump(_jsonable(result), fh, indent=1)
    with open(os.path.join(args.out, "efficiency.md"), "w") as fh:
        fh.write(render_markdown(result))
    log(f"wrote {os.path.join(args.out, 'efficiency.json')} and efficiency.md in {result['total_seconds']:.0f} s")
    for key in HEADLINE_KEYS:
        log(f"  {key}: {fmt(out.get(key))}")
    return 0


def _section_of(key):
    if key.startswith(("train_", "time_to_best")):
        return "train"
    if key.startswith(("incremental", "lrurec_step_time")):
        return "incremental"
    if key.startswith(("linrec_", "long_")):
        return "long"
    return "floor"


META_KEYS = ("machine", "command", "git_commit", "quick", "notes", "section_seconds", "total_seconds", "details",
             "targets", "findings", "observations", "previous_runs")


def compact_series(details, every=32):
    """Keep the cumulative-time series of the incremental section at steps 1..64, every ``every``-th
    step and the last one (the plot is drawn from the full series before this)."""
    for res in (details.get("incremental") or {}).values():
        for row in (res.get("models") or {}).values() if isinstance(res, dict) else ():
            if "cum_steps" in row:
                continue
            T = len(row["cum_cpu_s"])
            steps = sorted({*range(1, min(64, T) + 1), *range(every, T + 1, every), T})
            row["cum_steps"] = steps
            for key in ("cum_cpu_s", "cum_wall_s"):
                row[key] = [round(row[key][t - 1], 6) for t in steps]
    return details


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


if __name__ == "__main__":
    sys.exit(main())
