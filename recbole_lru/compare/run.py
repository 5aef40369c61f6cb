"""The comparison: every entry under one protocol, one row each in ``<out>/<dataset>/summary.json``.

Where things go (nothing is written into the package or, unless ``out`` says so, a checkout):

* rows, table, plots and per-model logs: ``<out>/<dataset>/`` (``out`` defaults to
  ``./compare_results``); a ``quick`` run writes to ``<out>/quick/<dataset>/`` instead, so it never
  touches a full run's folder;
* each unfinished entry's checkpoints and progress: ``<results folder>/.work/<entry>/``, or
  ``<work_dir>/<dataset>[/quick]/<entry>/`` with ``work_dir``; removed when the entry finishes.
"""
from __future__ import annotations

import datetime as _dt
import os
import shutil
import time

from ..provenance import git_info, json_safe, machine_info
from . import data as _data
from . import runner
from .entries import DEFAULT_MODELS, apply_model_configs, parse_models, safe_name
from .optim import LEARNERS, check_like_for_like, resolve_optimization
from .summary import is_done, make_row, optimization_differs, update_summary

__all__ = ["compare", "DEFAULT_OUT"]

DEFAULT_OUT = "compare_results"


def _print(message: str) -> None:
    print(message, flush=True)


def _fmt(value, spec="{:.4f}"):
    return "–" if value is None else spec.format(value)


def _check_model_names(entries) -> None:
    """Unknown model names become error rows at once instead of costing a process each."""
    from .. import registry

    registry.register()
    from recbole.utils import get_model

    for entry in entries:
        if entry.error is None:
            try:
                get_model(entry.model)
            except Exception as err:  # noqa: BLE001 - recorded in the row
                entry.error = f"{type(err).__name__}: {err}"


def results_folder(out: str, dataset: str, quick: bool) -> str:
    return os.path.join(out, "quick", dataset) if quick else os.path.join(out, dataset)


def work_root(folder: str, dataset: str, quick: bool, work_dir: str | None) -> str:
    if work_dir:
        return os.path.join(work_dir, dataset, "quick") if quick else os.path.join(work_dir, dataset)
    return os.path.join(folder, ".work")


def compare(dataset: str, models=None, data_path: str | None = None, out: str = DEFAULT_OUT,
            max_len: int | None = None, epochs: int = 200, stopping_step: int = 10,
            valid_metric: str = "Recall@10", mask_history: bool = False, quick: bool = False,
            quick_users: int = 200, quick_items: int = 30, force: bool = False, overrides: dict | None = None,
            model_configs=None, timeout: float | None = None, threads: int | None = None,
            time_budget: float | None = None, optimizer: str | None = None, work_dir: str | None = None,
            in_process: bool = False, command: str | None = None, log=_print) -> dict:
    """Run ``models`` on ``dataset`` under one protocol; returns the summary dict (also written
    to ``summary.json`` in the results folder, see the module docstring).

    Args:
        models: ``"LRURec,SASRec"``, a list of entries (``"LRURec:prefix"``), or None for
            :data:`DEFAULT_MODELS`.
        overrides: config applied to every model (after the protocol's keys).
        model_configs: ``["MODEL:key=value", ...]`` for single entries (applied last).
        optimizer: one RecBole ``learner`` for every model (the LRURec paper trains all with
            ``adamw``); recorded in the protocol. Each row's optimizer, learning rate, weight decay
            (decoupled or L2), and clipping are recorded either way, and a shared ``weight_decay``
            that the rows' optimizers apply differently stops the run (:mod:`.optim`).
        quick: a few users (``quick_users``, each with at most their last ``quick_items``
            interactions) and one epoch, to check that everything runs.
        force: rerun models that already have a finished row (and drop their unfinished work).
        timeout: seconds per model before its process is killed (None: no limit).
        threads: ``torch.set_num_threads`` in each model's process.
        time_budget: training seconds per model; training stops at the last epoch boundary
            inside it and the model is tested with its best validation weights (None: no limit).
        work_dir: where unfinished entries keep checkpoints (default: the results folder's ``.work``).
        in_process: run each model in this process instead of a fresh one (debugging, tests).
    """
    entries = parse_models(models if models is not None else DEFAULT_MODELS)
    apply_model_configs(entries, model_configs)
    _check_model_names(entries)
    overrides = dict(overrides or {})
    if optimizer is not None:
        optimizer = optimizer.lower()
        if optimizer not in LEARNERS:
            raise ValueError(f"--optimizer {optimizer}: choose one of RecBole's {', '.join(LEARNERS)}")
        if overrides.get("learner", optimizer).lower() != optimizer:
            raise ValueError(f"--optimizer {optimizer} and --learner={overrides['learner']} disagree; keep one.")
        overrides["learner"] = optimizer
    if quick:
        epochs = 1
    # absolute: each model's process works in its own folder
    folder = os.path.abspath(results_folder(out, dataset, quick))
    works = os.path.abspath(work_root(folder, dataset, quick, work_dir))

    source_dir = _data.resolve_data_dir(dataset, data_path)
    max_len = int(max_len) if max_len is not None else _data.dataset_max_len(dataset)
    protocol = {
        "split": "leave-one-out: last interaction test, second-to-last validation (time order)",
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
        "metrics": ["Recall", "NDCG", "MRR"],
        "topk": [10, 20],
        "valid_metric": valid_metric,
        "stopping_step": int(stopping_step),
        "epochs": int(epochs),
        "time_budget_s": float(time_budget) if time_budget else None,
        "eval_step": 1,
        "MAX_ITEM_LIST_LENGTH": max_len,
        "mask_history": bool(mask_history),
        "optimizer": optimizer,
        "quick": bool(quick),
        "quick_users": int(quick_users) if quick else None,
        "quick_items": int(quick_items) if quick else None,
        "shared_overrides": json_safe(overrides),
        "data_source": source_dir,
    }
    # the protocol's RecBole keys, given to every model (the rest of the protocol is bookkeeping)
    shared = {k: protocol[k] for k in ("eval_args", "metrics", "topk", "valid_metric", "stopping_step", "epochs",
                                       "eval_step", "MAX_ITEM_LIST_LENGTH", "mask_history")}
    shared.update(show_progress=False, metric_decimal_place=5)
    if data_path and source_dir is None:
        shared["data_path"] = os.path.abspath(data_path)
    if source_dir and not _data.dataset_yaml_files(dataset) and "load_col" not in overrides:
        # RecBole's sample.yaml loads only user and item ids; a dataset without a YAML of its own
        # needs its time column for the time-ordered split, so load the whole .inter header.
        shared["load_col"] = {"inter": _data.inter_columns(source_dir, dataset, overrides.get("field_separator", "\t"))}
    shared.update(overrides)

    # before anything is written or trained: each row's optimisation, and the like-for-like rule
    optimization = resolve_optimization(entries, dataset, shared)
    check_like_for_like(entries, optimization, overrides)

    import recbole_lru

    run_info = {
        "command": command,
        "cwd": os.getcwd(),
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        **git_info(os.path.dirname(os.path.abspath(recbole_lru.__file__))),
        "models": [e.name for e in entries],
    }
    def report(plots=True):
        """Writes the table (and plots) of a merged summary; imported when used, so that
        ``python -m recbole_lru.compare.report`` finds its module not yet imported."""
        def write(merged):
            from .report import write_report

            write_report(merged, folder, log, plots=plots)
        return write

    summary = update_summary(folder, dataset, protocol, run_info, written=report(plots=False))

    t_all = time.perf_counter()
    log(f"[compare] {dataset}: {len(entries)} model(s) -> {os.path.abspath(folder)}"
        f"{' (quick)' if quick else ''}; data: {source_dir or 'RecBole default'}")
    subset = None
    try:
        data_dir = source_dir
        todo = [e for e in entries
                if force or not is_done(summary["models"].get(e.name), e, protocol, optimization.get(e.name))]
        if quick and todo and any(e.error is None for e in todo):
            if source_dir is None:
                raise FileNotFoundError(f"--quick needs the dataset file on disk: no {dataset}.inter found "
                                        f"under {os.path.join(data_path or 'dataset', dataset)}; pass --data_path")
            subset = os.path.join(works, "data")
            time_field = overrides.get("TIME_FIELD") or _data.dataset_setting(dataset, "TIME_FIELD", "timestamp")
            data_dir, kept = _data.write_user_subset(
                source_dir, dataset, subset, quick_users, overrides.get("USER_ID_FIELD", "user_id"),
                overrides.get("field_separator", "\t"), max_per_user=quick_items, time_field=time_field)
            run_info["quick_users_kept"] = kept
            log(f"[compare] quick: {kept} users, their last {quick_items} interactions at most, 1 epoch")

        for i, entry in enumerate(entries, 1):
            tag = f"[{i}/{len(entries)}] {entry.name}"
            if not any(entry is e for e in todo):
                log(f"{tag}: already finished, skipped (--force reruns it)")
                continue
            log_path = os.path.join(folder, "logs", f"{safe_name(entry.name)}.log")
            log_rel = os.path.relpath(log_path, folder)
            work = runner.entry_work_dir(works, entry)
            if force:
                shutil.rmtree(work, ignore_errors=True)
            t0 = time.perf_counter()
            old = summary["models"].get(entry.name)
            now = optimization.get(entry.name)
            changed = now and old and not old.get("error") and optimization_differs(old, now)
            if changed and not force:
                log(f"{tag}: its row was optimised differently ({changed}): training it again")
            if entry.error:
                result = {"error": entry.error}
            else:
                state = "continuing" if os.path.isfile(os.path.join(work, "progress.json")) else "started"
                log(f"{tag}: {state} ({_dt.datetime.now().strftime('%H:%M:%S')}, log {log_path})")
                config = dict(shared)
                config.update(entry.overrides)
                result = runner.run_worker(entry, dataset, config, data_dir, log_path, work, timeout=timeout,
                                           threads=threads, time_budget=time_budget, in_process=in_process)
            wall = time.perf_counter() - t0
            row = make_row(entry, result, protocol, shared, run_info, wall, log_rel, optimization.get(entry.name))
            summary = update_summary(folder, dataset, protocol, run_info, rows={entry.name: row}, written=report())
            if row["error"]:
                log(f"{tag}: FAILED after {wall:.1f}s: {row['error'][:300]}")
            else:
                t = row["test"]
                log(f"{tag}: finished in {wall:.1f}s ({row['regime']}): test Recall@10 {_fmt(t.get('recall@10'))} "
                    f"NDCG@10 {_fmt(t.get('ndcg@10'))}; best epoch {row.get('epochs_to_best')} of "
                    f"{row.get('epochs_run')}, {_fmt(row.get('seconds_per_epoch'), '{:.2f}')} s/epoch")
    finally:
        if subset:
            shutil.rmtree(subset, ignore_errors=True)
        if os.path.isdir(works) and not os.listdir(works):
            os.rmdir(works)
    if not any(os.path.isfile(os.path.join(folder, f)) for f in ("valid_ndcg_vs_time.png", "test_metrics.png")):
        summary = update_summary(folder, dataset, protocol, run_info, written=report())
    failed = [n for n in (e.name for e in entries) if summary["models"].get(n, {}).get("error")]
    log(f"[compare] done in {time.perf_counter() - t_all:.1f}s; {len(entries) - len(failed)} ok"
        + (f", {len(failed)} failed ({', '.join(failed)})" if failed else "")
        + f"; {os.path.join(folder, 'summary.md')}")
    return summary
