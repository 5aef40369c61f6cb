"""One model, start to finish: RecBole's straight pipeline (as ``recbole.quick_start.run_recbole``)
with the harness's trainer, resumable from the entry's work folder.

    Config -> init_seed -> create_dataset -> data_preparation
    -> get_model(...)(config, train_data._dataset) -> harness trainer -> fit -> evaluate(test)

The work folder of an entry (``spec["work"]``) holds its checkpoints (``saved/``), RecBole's
``log/`` and ``log_tensorboard/``, and ``progress.json``. When the same entry is started again with
the same config and a ``-last`` checkpoint is there, training continues from it (see
:mod:`.hooks`); when training had finished and only testing was lost, the best checkpoint is tested.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import sys
import threading
import time
import traceback

from ..provenance import atomic_write_json, json_safe, machine_info
from .optim import build_config

__all__ = ["build_config", "run_model", "run_spec", "worker_main", "config_fingerprint"]

# spec keys that say where things are, not what is trained
_PLACE_KEYS = ("checkpoint_dir", "data_path")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def config_fingerprint(spec: dict) -> str:
    """What a resumed run must share with the run that wrote the checkpoint. Not the time budget:
    a run stopped by its budget continues under a larger one (a long run spread over sessions)."""
    what = {"model": spec["model"], "dataset": spec["dataset"],
            "config": {k: v for k, v in spec["config"].items() if k not in _PLACE_KEYS}}
    return hashlib.sha256(json.dumps(json_safe(what), sort_keys=True).encode()).hexdigest()[:16]


def _read_progress(path: str, fingerprint: str, hooks) -> dict:
    try:
        with open(path) as fh:
            progress = json.load(fh)
    except (OSError, ValueError):
        return hooks.new_progress(fingerprint)
    if progress.get("fingerprint") != fingerprint:
        print(f"{path}: written under another config; starting this model from scratch", flush=True)
        return hooks.new_progress(fingerprint)
    return progress


def _budget_extended(progress: dict, spec: dict) -> bool:
    """Whether a fit that its time budget stopped has more time now (a larger budget, or none)."""
    if (progress.get("fit") or {}).get("stopped_by") != "time_budget":
        return False
    budget = spec.get("time_budget")
    return not budget or budget > progress["train_seconds"]


def run_model(spec: dict, out: dict) -> None:
    """Train, validate and test one model; fills ``out`` as it goes so a failure keeps what ran."""
    import warnings
    from logging import getLogger

    # pandas/torch deprecation notices from inside RecBole would bury the training log
    warnings.filterwarnings("ignore", category=FutureWarning)
    import torch

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    from .. import compat, registry
    from ..trainer import SequentialTrainer, last_checkpoint_path
    from . import hooks
    from .entries import safe_name
    from .optim import DECAY_ALL, DECAY_WEIGHTS_ONLY, optimization_record

    compat.keep_freed_memory()  # every model alike: the same allocator settings for all rows
    compat.quiet_recbole_warnings()
    registry.register()
    from recbole.utils import get_model, get_trainer, init_seed

    from ..pipeline import prepare_data

    work = spec["work"]
    fingerprint = config_fingerprint(spec)
    progress_path = os.path.join(work, "progress.json")
    progress = _read_progress(progress_path, fingerprint, hooks)

    t_start = time.perf_counter()
    config = build_config(spec["model"], spec["dataset"], spec["config"])
    if spec.get("data_dir"):
        config["data_path"] = spec["data_dir"]
    out["config"] = json_safe(config.final_config_dict)
    dataset, train_data, valid_data, test_data = prepare_data(config)
    logger = getLogger()
    out["data_seconds"] = time.perf_counter() - t_start
    out["n_users"] = int(dataset.user_num - 1)
    out["n_items"] = int(dataset.item_num - 1)
    out["n_interactions"] = int(len(dataset.inter_feat))
    out["n_train_rows"] = int(len(train_data._dataset))

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    logger.info(model)
    out["params"] = int(sum(p.numel() for p in model.parameters()))
    mode = getattr(model, "train_mode", None) or config["train_mode"]
    out["regime"] = "whole_sequence" if mode == "whole_sequence" else "prefix"
    base = get_trainer(config["MODEL_TYPE"], config["model"])
    trainer_class = hooks.harness_trainer_class(base)
    # a fixed name (RecBole's carries the start time), so a restarted run finds its own checkpoints
    best_file = os.path.join(config["checkpoint_dir"], f"{safe_name(spec['name'])}.pth")
    last = last_checkpoint_path(best_file)
    resumable = issubclass(trainer_class, SequentialTrainer)
    tested_only = progress["fit_done"] and os.path.isfile(best_file) and not _budget_extended(progress, spec)
    resume = not tested_only and resumable and os.path.isfile(last) and bool(progress["epoch_seconds"])
    if not tested_only and not resume:
        if progress["epoch_seconds"]:
            print("no checkpoint to continue from: training this model from epoch 0", flush=True)
        for stale in (best_file, last):  # another config's, or an unfinished run's that cannot resume
            if os.path.isfile(stale):
                os.remove(stale)
        progress = hooks.new_progress(fingerprint)
    trainer = trainer_class(config, model, progress=progress, progress_path=progress_path,
                            time_budget=spec.get("time_budget"))
    trainer.saved_model_file = best_file
    out["dataset_class"] = f"{type(train_data._dataset).__module__}.{type(train_data._dataset).__name__}"
    out["trainer_class"] = f"{base.__module__}.{base.__name__}"
    out["resumable"] = resumable
    groups = resumable and hasattr(model, "optimizer_param_groups")
    out["optimization"] = optimization_record(config, DECAY_WEIGHTS_ONLY if groups else DECAY_ALL)

    if tested_only:
        print(f"training had finished before the interruption; testing {best_file}", flush=True)
    else:
        if resume:
            try:
                trainer.resume_checkpoint(last)
            except ValueError as err:  # the model no longer fits it: other data under the same name?
                raise ValueError(f"{spec['name']}: the unfinished run's checkpoint in {work} cannot be continued "
                                 f"({err}). Start the model over with --force.") from None
            out["resumed_from_epoch"] = trainer.restore_progress()
            progress["fit_done"] = False  # (a budget-stopped fit given more time)
            print(f"resumed from {last} after epoch {out['resumed_from_epoch']}", flush=True)
        out["curve"] = progress["curve"]  # the list the trainer appends to: a failure keeps what ran
        progress["fit"] = _fit(trainer, train_data, valid_data, config, hooks)
        progress["fit_done"] = True
        trainer._write_progress()

    p = progress
    out.update(p["fit"])
    out["curve"] = p["curve"]
    out["fit_seconds"] = p["train_seconds"]
    out["epochs_run"] = len(p["epoch_seconds"])
    out["epoch_seconds"], out["valid_seconds"] = p["epoch_seconds"], p["valid_seconds"]
    out["checkpoint_seconds"] = p["checkpoint_seconds"]
    out["resumed_at_epochs"] = p["resumed_at_epochs"]
    best = [c for c in p["curve"] if c["is_best"]]
    if best:
        out["epochs_to_best"] = best[-1]["epoch"] + 1
        out["seconds_to_best"] = best[-1]["seconds"]
    out["seconds_per_epoch"] = sum(p["epoch_seconds"]) / len(p["epoch_seconds"]) if p["epoch_seconds"] else None

    t = time.perf_counter()
    if os.path.isfile(best_file):
        checkpoint = compat.load_checkpoint(best_file, map_location=config["device"])
        model.load_state_dict(checkpoint["state_dict"])
        model.load_other_parameter(checkpoint.get("other_parameter"))
    test_result = trainer.evaluate(test_data, load_best_model=False, show_progress=config["show_progress"])
    out["test_seconds"] = time.perf_counter() - t
    out["test"] = hooks.metrics(test_result)
    print(f"best valid: {out['best_valid']}\ntest: {out['test']}", flush=True)


def _fit(trainer, train_data, valid_data, config, hooks) -> dict:
    try:
        best_score, best_valid = trainer.fit(train_data, valid_data, saved=True,
                                             show_progress=config["show_progress"])
        epochs = len(trainer.progress["epoch_seconds"])
        stopped_by = "early_stopping" if epochs < config["epochs"] else "epoch_cap"
    except hooks.TimeBudgetReached:
        best_score, best_valid, stopped_by = trainer.best_valid_score, trainer.best_valid_result, "time_budget"
        print(f"time budget of {trainer.time_budget:g} s reached after {len(trainer.progress['epoch_seconds'])} "
              f"epochs", flush=True)
    return {"stopped_by": stopped_by, "best_valid": hooks.metrics(best_valid),
            "best_valid_score": json_safe(float(best_score))}


def _exit_with_parent() -> None:
    """Stop this worker when the harness that started it dies (kill -9 gives it no chance to stop
    us): an orphan would go on training while a restarted harness resumes the same entry."""
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(70)  # checkpoints and progress are written atomically: nothing is half-written

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def run_spec(spec: dict) -> int:
    """Run one spec and write its result JSON; returns 0 when the model finished, 1 when not."""
    import resource

    from filelock import FileLock, Timeout

    os.makedirs(spec["work"], exist_ok=True)
    t0 = time.perf_counter()
    out = {"error": None, "started_at": _now()}
    status = 0
    lock = FileLock(os.path.join(spec["work"], ".lock"))
    try:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise RuntimeError(f"another harness process is already running {spec['name']} in {spec['work']}; "
                               f"wait for it to finish or stop it, then start again") from None
        try:
            run_model(spec, out)
        finally:
            lock.release()
    except KeyboardInterrupt:
        # the whole harness stops (Ctrl-C reaches it too); the same command continues from here
        out["error"] = "interrupted (the same command continues it from its last finished epoch)"
        raise
    except BaseException as err:  # noqa: BLE001 - the row records any failure
        status = 1
        traceback.print_exc()
        out["error"] = f"{type(err).__name__}: {err}".strip()
        out["traceback"] = traceback.format_exc()[-4000:]
    finally:
        out["worker_seconds"] = time.perf_counter() - t0
        out["finished_at"] = _now()
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        out["machine"] = machine_info()
        atomic_write_json(spec["result_path"], out)
    return status


def worker_main(spec_path: str) -> int:
    """Entry point of the per-model process (``python -m recbole_lru.compare --_worker SPEC``)."""
    with open(spec_path) as fh:
        spec = json.load(fh)
    sys.argv = sys.argv[:1]  # RecBole's Config also reads --key=value from the command line
    _exit_with_parent()
    try:
        return run_spec(spec)
    except KeyboardInterrupt:
        return 130
