"""``summary.json``: one row per entry, the protocol, and a record of every run that wrote to it.

Several harness processes may work on one results folder at once (different models on different
machines' GPUs, or a second terminal): every update re-reads the file under a lock, merges its own
rows in and writes it back atomically, so none drops another's rows.

The row keys are a contract (``benchmarks/paper_table.py`` and the README read them): keys are only
ever added.
"""
from __future__ import annotations

import json
import os
import time

from filelock import FileLock

from ..provenance import atomic_write_json, json_safe, portable_paths
from .protocol import METRIC_KEYS, protocol_key

__all__ = ["METRIC_KEYS", "load_summary", "protocol_key", "is_done", "optimization_differs", "empty_row", "make_row",
           "update_summary"]

# keys copied from a worker's result into its row when present
_RESULT_KEYS = (
    "epochs_to_best", "seconds_to_best", "seconds_per_epoch", "params", "peak_rss_mb", "epochs_run", "stopped_by",
    "best_valid_score", "epoch_seconds", "valid_seconds", "curve", "data_seconds", "fit_seconds", "test_seconds",
    "worker_seconds", "checkpoint_seconds", "n_users", "n_items", "n_interactions", "n_train_rows",
    "dataset_class", "trainer_class", "resumable", "resumed_at_epochs", "optimization", "started_at",
    "finished_at", "machine", "config", "traceback",
)


def load_summary(path: str, dataset: str) -> dict:
    if os.path.isfile(path):
        try:
            with open(path) as fh:
                data = json.load(fh)
            if isinstance(data, dict) and isinstance(data.get("models"), dict):
                data.setdefault("runs", [])
                data["dataset"] = data.get("dataset") or dataset
                return data
        except (OSError, ValueError):
            broken = f"{path}.broken-{int(time.time())}"
            os.replace(path, broken)
            print(f"[compare] {path} was unreadable; moved to {broken}", flush=True)
    return {"dataset": dataset, "protocol": {}, "models": {}, "runs": []}


def is_done(row: dict | None, entry, protocol: dict, optimization: dict | None = None) -> bool:
    """A finished row of ``entry`` under ``protocol`` with the same per-entry overrides and, when
    ``optimization`` is given, optimised as this run would (a model's YAML defaults may have
    changed since the row was made: SASRecWS moved from adam to the LRURec paper's AdamW)."""
    return (
        bool(row)
        and not row.get("error")
        and protocol_key(row.get("protocol")) == protocol_key(protocol)
        and row.get("overrides", {}) == json_safe(entry.overrides)
        and (optimization is None or not optimization_differs(row, optimization))
    )


def optimization_differs(row: dict, optimization: dict) -> str | None:
    """How a row's optimisation differs from ``optimization`` (e.g. ``optimizer adam -> adamw``),
    or None when it is the same or the row does not say."""
    from .optim import optimization_of_row

    had = optimization_of_row(row)
    if not had:
        return None
    keys = ["optimizer", "learning_rate", "weight_decay", "decay", "clip_grad_norm"]
    if had.get("decay_params") is not None:  # rows from before the record do not know it
        keys.append("decay_params")
    changes = [f"{k} {had.get(k)!r} -> {optimization.get(k)!r}" for k in keys
               if json_safe(had.get(k)) != json_safe(optimization.get(k))]
    return ", ".join(changes) or None


def empty_row(entry) -> dict:
    return {
        "model": entry.model,
        "regime": entry.regime or "prefix",
        "test": {k: None for k in METRIC_KEYS},
        "best_valid": {k: None for k in METRIC_KEYS},
        "epochs_to_best": None,
        "seconds_to_best": None,
        "seconds_per_epoch": None,
        "params": None,
        "optimization": None,
        "error": None,
    }


def make_row(entry, result: dict, protocol: dict, shared: dict, run_info: dict, wall: float, log_rel: str,
             optimization: dict | None = None) -> dict:
    """A summary row from a worker's result; ``optimization`` (resolved before training) stands in
    for the worker's record when the worker did not get that far."""
    row = empty_row(entry)
    row["regime"] = result.get("regime") or row["regime"]
    row["test"].update(result.get("test") or {})
    row["best_valid"].update(result.get("best_valid") or {})
    for key in _RESULT_KEYS:
        if result.get(key) is not None:
            row[key] = result[key]
    row["optimization"] = row["optimization"] or optimization
    row["error"] = result.get("error") or entry.error
    row["overrides"] = dict(entry.overrides)
    row["protocol"] = protocol
    row["shared_config"] = shared
    row["wall_seconds"] = wall
    row["log"] = log_rel
    for key in ("command", "git_commit", "git_dirty", "timestamp"):
        row[key] = run_info.get(key)
    row.setdefault("machine", run_info.get("machine"))
    return json_safe(row)


def update_summary(folder: str, dataset: str, protocol: dict, run_info: dict, rows: dict | None = None,
                   written=None) -> dict:
    """Re-read summary.json under the folder's lock, put this run's protocol, run record and ``rows``
    in and write it back; ``written(summary)``, still under the lock, writes what is made from it
    (the table and plots). Returns the merged summary."""
    os.makedirs(folder, exist_ok=True)
    with FileLock(os.path.join(folder, ".summary.lock")):
        summary = load_summary(os.path.join(folder, "summary.json"), dataset)
        summary["dataset"] = dataset
        summary["protocol"] = protocol
        if not any(r.get("timestamp") == run_info["timestamp"] and r.get("command") == run_info["command"]
                   for r in summary["runs"]):
            summary["runs"].append(run_info)
        summary["models"].update(rows or {})
        summary = portable_paths(json_safe(summary))
        atomic_write_json(os.path.join(folder, "summary.json"), summary)
        if written is not None:
            written(summary)
    return summary
