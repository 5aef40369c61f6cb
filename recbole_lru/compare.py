"""Side-by-side comparison of recommenders on one dataset under one evaluation protocol.

Every model runs with its own default YAML plus the same protocol:

* leave-one-out split (``LS: valid_and_test``, time order, grouped by user), full ranking;
* the same ``MAX_ITEM_LIST_LENGTH`` (``--max_len``; default the dataset YAML's value);
* Recall, NDCG and MRR at 10 and 20;
* the same early stopping (``valid_metric`` Recall@10, ``stopping_step`` validations, ``epochs`` cap);
* optionally ``mask_history: True`` (the user's input items are removed from the ranking).

Each model trains in its own Python process, so a crash or an out-of-memory kill costs one row and
peak memory is that model's alone. Rows are written to ``<out>/<dataset>/summary.json`` as each
model finishes; a restarted run skips the models already finished under the same protocol.

    python -m recbole_lru.compare --dataset amazon-video-games --data_path ../shared/datasets \\
        --models LRURec,SASRec --mask_history --epochs 200 --stopping_step 10 --out results

Model entries may name a training regime: ``LRURec:prefix`` / ``LRURec:whole_sequence`` set
``train_mode`` (``SASRec:whole_sequence`` is the plugin's ``SASRecWS``). ``--key=value`` overrides
apply to every model, ``--model_config MODEL:key=value`` to one entry (or every entry of a model).

Outputs in ``<out>/<dataset>/``: ``summary.json``, ``summary.md``, ``valid_ndcg_vs_time.png``,
``test_metrics.png`` and ``logs/<model>.log`` (RecBole's log of each run). RecBole's checkpoints,
``log/`` and ``log_tensorboard/`` go to a temporary folder that is removed afterwards.
"""
from __future__ import annotations

import argparse
import contextlib
import ast
import datetime as _dt
import json
import math
import os
import platform
import random
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_MODELS",
    "METRIC_KEYS",
    "ModelEntry",
    "parse_models",
    "apply_model_configs",
    "compare",
    "main",
    "render_markdown",
    "plot_summary",
]

DEFAULT_MODELS = ["LRURec", "LinRec", "SASRec", "BERT4Rec", "GRU4Rec", "NARM", "FPMC", "Caser", "BPR"]
REGIMES = ("prefix", "whole_sequence")
METRIC_KEYS = ["recall@10", "ndcg@10", "recall@20", "ndcg@20", "mrr@10", "mrr@20"]
# keys of the protocol that describe where things are, not how models are compared
_PROTOCOL_LOCATION_KEYS = ("data_source",)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATASETS = os.path.abspath(os.path.join(REPO_ROOT, "..", "shared", "datasets"))


# ============================================================================================
# Small helpers
# ============================================================================================
def _print(message: str) -> None:
    print(message, flush=True)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def parse_value(text: str):
    """A command-line value read as a Python literal where it parses, else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_overrides(args) -> dict:
    """``--key=value`` strings -> config dict."""
    out = {}
    for arg in args:
        if not arg.startswith("--") or "=" not in arg:
            raise ValueError(f"Unrecognised argument {arg!r}: config overrides are written --key=value.")
        key, value = arg[2:].split("=", 1)
        if not key:
            raise ValueError(f"Unrecognised argument {arg!r}: empty key.")
        out[key] = parse_value(value)
    return out


def json_safe(obj):
    """A JSON-serialisable copy: enums by name, numpy/torch scalars as numbers, non-finite floats
    as None, anything else unknown as its string."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in obj]
    import enum

    if isinstance(obj, enum.Enum):
        return obj.name
    item = getattr(obj, "item", None)
    if callable(item) and getattr(obj, "ndim", 1) == 0:
        try:
            return json_safe(item())
        except Exception:
            pass
    return str(obj)


def _atomic_write_text(path: str, text: str) -> None:
    from .compat import atomic_write

    atomic_write(path, lambda fh: fh.write(text), binary=False)


def atomic_write_json(path: str, obj) -> None:
    """Write JSON to a temporary file beside ``path`` and rename it into place."""
    _atomic_write_text(path, json.dumps(json_safe(obj), indent=2) + "\n")


def safe_name(name: str) -> str:
    """A file-name form of a model entry (``LRURec:prefix`` -> ``LRURec_prefix``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


def machine_info() -> dict:
    info = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "hostname": platform.node(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # pragma: no cover
        pass
    try:
        import recbole

        info["recbole"] = recbole.__version__
    except Exception:  # pragma: no cover
        pass
    return info


def git_info(repo: str = REPO_ROOT) -> dict:
    def git(*args):
        try:
            out = subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"git_commit": commit, "git_dirty": bool(status) if status is not None else None}


# ============================================================================================
# Model entries
# ============================================================================================
@dataclass
class ModelEntry:
    """One row of the comparison: the display name, the RecBole model and its own overrides."""

    name: str
    model: str
    regime: str | None = None
    overrides: dict = field(default_factory=dict)
    error: str | None = None  # a problem found before running (e.g. no such regime)


def parse_models(text) -> list[ModelEntry]:
    """``"LRURec,SASRec:whole_sequence"`` (or a list) -> entries, in order, without duplicates.

    ``MODEL[:regime]@label`` adds a separately named row of the same model (``LRURec@dropout0.6``),
    to be given its own settings with ``--model_config LRURec@dropout0.6:hidden_dropout_prob=0.6``.
    """
    from . import registry

    items = text.split(",") if isinstance(text, str) else list(text)
    entries, seen = [], set()
    for raw in items:
        raw = raw.strip()
        if not raw:
            continue
        spec, at, label = raw.partition("@")
        if at and not label.strip():
            raise ValueError(f"model entry {raw!r}: nothing after '@' (expected MODEL@label)")
        model, _, regime = spec.partition(":")
        model, regime = model.strip(), regime.strip() or None
        if regime is not None and regime not in REGIMES:
            raise ValueError(f"model entry {raw!r}: regime must be one of {', '.join(REGIMES)}")
        name = (model if regime is None else f"{model}:{regime}") + (f"@{label.strip()}" if at else "")
        if name in seen:
            continue
        seen.add(name)
        entry = ModelEntry(name=name, model=model, regime=regime)
        if regime is not None:
            if model == "SASRec" and regime == "whole_sequence":
                entry.model = "SASRecWS"
                entry.overrides["train_mode"] = "whole_sequence"
            elif model in registry.MODELS:
                entry.overrides["train_mode"] = regime
                if model == "LinRec" and regime == "whole_sequence":
                    # every-position training needs the causal form of LinRec's attention, and one
                    # row per user window needs the paper's batch of 128 rows (RecBole's default
                    # 2048 would leave about one update per epoch on small sets)
                    entry.overrides["causal"] = True
                    entry.overrides.setdefault("train_batch_size", 128)
            elif regime == "whole_sequence":
                entry.error = (f"{model} has no whole_sequence training regime (only the plugin's "
                               f"{', '.join(registry.MODELS)} and SASRec:whole_sequence have one)")
        entries.append(entry)
    if not entries:
        raise ValueError("no models given")
    return entries


def apply_model_configs(entries: list[ModelEntry], items) -> None:
    """Apply ``MODEL:key=value`` strings. ``MODEL`` is an entry's display name (``LRURec:prefix``)
    or a model name, which reaches every entry of that model."""
    for item in items or []:
        head, eq, value = item.partition("=")
        target, colon, key = head.rpartition(":")
        if not eq or not colon or not target or not key:
            raise ValueError(f"--model_config {item!r}: expected MODEL:key=value")
        key = key.lstrip("-")
        hits = [e for e in entries if e.name == target]
        if not hits:
            hits = [e for e in entries if target in (e.model, e.name.partition("@")[0].partition(":")[0])]
        if not hits:
            raise ValueError(f"--model_config {item!r}: {target!r} is not among the models "
                             f"({', '.join(e.name for e in entries)})")
        for e in hits:
            e.overrides[key] = parse_value(value)


# ============================================================================================
# Data
# ============================================================================================
def resolve_data_dir(dataset: str, data_path: str | None) -> str | None:
    """The folder that holds ``<dataset>.inter``, or None (then RecBole gets ``data_path`` as is)."""
    candidates = []
    if data_path:
        candidates.append(os.path.join(data_path, dataset))
    else:
        candidates += [os.path.join("dataset", dataset), os.path.join(SHARED_DATASETS, dataset)]
    if dataset == "ml-100k":
        try:
            import recbole

            candidates.append(os.path.join(os.path.dirname(recbole.__file__), "dataset_example", dataset))
        except ImportError:  # pragma: no cover
            pass
    for folder in candidates:
        if os.path.isfile(os.path.join(folder, f"{dataset}.inter")):
            return os.path.abspath(folder)
    return None


def dataset_max_len(dataset: str) -> int:
    """``MAX_ITEM_LIST_LENGTH`` from the dataset's YAML (the plugin's, else RecBole's), else 50."""
    return int(dataset_setting(dataset, "MAX_ITEM_LIST_LENGTH", 50))


def _dataset_yaml_files(dataset: str) -> list[str]:
    from . import registry

    files = [registry.find_yaml("dataset", dataset)]
    try:
        import recbole

        files.append(os.path.join(os.path.dirname(recbole.__file__), "properties", "dataset", f"{dataset}.yaml"))
    except ImportError:  # pragma: no cover
        pass
    return [str(f) for f in files if f and os.path.isfile(f)]


def inter_columns(data_dir: str, dataset: str, separator: str = "\t") -> list[str]:
    """Field names in the header of ``<data_dir>/<dataset>.inter``."""
    with open(os.path.join(data_dir, f"{dataset}.inter"), encoding="utf-8") as fh:
        header = fh.readline().rstrip("\r\n")
    return [h.split(":")[0] for h in header.split(separator) if h]


def dataset_setting(dataset: str, key: str, default=None):
    """A key of the dataset's YAML (the plugin's first, then RecBole's), else ``default``."""
    import yaml

    for f in _dataset_yaml_files(dataset):
        with open(f) as fh:
            data = yaml.safe_load(fh) or {}
        if data.get(key) is not None:
            return data[key]
    return default


def write_user_subset(src_dir: str, dataset: str, dest_root: str, n_users: int, user_field: str = "user_id",
                      separator: str = "\t", seed: int = 0, max_per_user: int | None = None,
                      time_field: str | None = None) -> tuple[str, int]:
    """Copy ``n_users`` randomly chosen users' interactions of ``src_dir/<dataset>.inter`` to
    ``dest_root/<dataset>/``; other atomic files (``.item``, ``.user``, ...) are linked as they are.
    With ``max_per_user`` only each user's latest interactions (by ``time_field`` when the file has
    it, else file order) are kept.

    Returns the new folder and the number of users kept.
    """
    dest = os.path.join(dest_root, dataset)
    os.makedirs(dest, exist_ok=True)
    src = os.path.join(src_dir, f"{dataset}.inter")
    with open(src, encoding="utf-8") as fh:
        header = fh.readline()
        names = [h.split(":")[0] for h in header.rstrip("\r\n").split(separator)]
        if user_field not in names:
            raise ValueError(f"{src}: no column {user_field!r} in header {header.strip()!r}")
        col = names.index(user_field)
        lines = fh.readlines()
    users = []
    seen = set()
    for line in lines:
        parts = line.rstrip("\r\n").split(separator)
        if len(parts) > col and parts[col] not in seen:
            seen.add(parts[col])
            users.append(parts[col])
    keep = set(random.Random(seed).sample(users, min(n_users, len(users))))
    kept = [ln for ln in lines if (p := ln.rstrip("\r\n").split(separator)) and len(p) > col and p[col] in keep]
    if max_per_user:
        tcol = names.index(time_field) if time_field in names else None
        by_user = {}
        for order, line in enumerate(kept):
            parts = line.rstrip("\r\n").split(separator)
            try:
                t = float(parts[tcol]) if tcol is not None else order
            except (ValueError, IndexError):
                t = order
            by_user.setdefault(parts[col], []).append((t, order, line))
        chosen = sorted(o for rows in by_user.values() for (_, o, _) in sorted(rows)[-max_per_user:])
        kept = [kept[o] for o in chosen]
    with open(os.path.join(dest, f"{dataset}.inter"), "w", encoding="utf-8") as out:
        out.write(header)
        for line in kept:
            out.write(line if line.endswith("\n") else line + "\n")
    for fname in os.listdir(src_dir):
        if fname.startswith(f"{dataset}.") and fname != f"{dataset}.inter":
            target = os.path.join(dest, fname)
            if not os.path.exists(target):
                try:
                    os.symlink(os.path.abspath(os.path.join(src_dir, fname)), target)
                except OSError:
                    shutil.copy(os.path.join(src_dir, fname), target)
    return dest, len(keep)


# ============================================================================================
# The worker: one model, one process
# ============================================================================================
def build_config(model: str, dataset: str, overrides: dict):
    """RecBole's Config for ``model`` with ``overrides``; CE-loss models get no negative sampling,
    models with another loss keep (or get) RecBole's uniform sampling, unless the overrides set it."""
    from recbole.config import Config

    cfg = dict(overrides)
    user_set = "train_neg_sample_args" in cfg
    if not user_set:
        cfg["train_neg_sample_args"] = None
    config = Config(model=model, dataset=dataset, config_dict=cfg)
    if not user_set and config["loss_type"] != "CE":
        del cfg["train_neg_sample_args"]
        config = Config(model=model, dataset=dataset, config_dict=cfg)
        sampling = (config["train_neg_sample_args"] or {}).get("distribution")
        if sampling in (None, "none") and config["MODEL_INPUT_TYPE"].name == "PAIRWISE":
            cfg["train_neg_sample_args"] = {"distribution": "uniform", "sample_num": 1}
            config = Config(model=model, dataset=dataset, config_dict=cfg)
    return config


def _metrics(result) -> dict:
    return {str(k).lower(): json_safe(float(v)) for k, v in (result or {}).items()}


class _TimeBudgetReached(Exception):
    """Raised before an epoch that would end past the model's training-time budget."""


def _run_model(spec: dict, out: dict) -> None:
    """Train, validate and test one model; fills ``out`` as it goes so a failure keeps what ran."""
    import warnings
    from logging import getLogger

    # pandas/torch deprecation notices from inside RecBole would bury the training log
    warnings.filterwarnings("ignore", category=FutureWarning)
    if spec.get("threads"):
        import torch

        torch.set_num_threads(int(spec["threads"]))
    from . import compat, registry

    compat.keep_freed_memory()  # every model alike: the same allocator settings for all rows

    registry.register()
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_logger, init_seed

    t_start = time.perf_counter()
    config = build_config(spec["model"], spec["dataset"], spec["config"])
    if spec.get("data_dir"):
        config["data_path"] = spec["data_dir"]
    out["config"] = json_safe(config.final_config_dict)
    out["regime"] = "whole_sequence" if config["train_mode"] == "whole_sequence" else "prefix"
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    logger.info(config)

    dataset = create_dataset(config)
    logger.info(dataset)
    train_data, valid_data, test_data = data_preparation(config, dataset)
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
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    out["dataset_class"] = f"{type(train_data._dataset).__module__}.{type(train_data._dataset).__name__}"
    out["trainer_class"] = f"{type(trainer).__module__}.{type(trainer).__name__}"

    epoch_seconds, valid_seconds, curve = [], [], []
    out["epoch_seconds"], out["valid_seconds"], out["curve"] = epoch_seconds, valid_seconds, curve
    clock = {"fit_start": None}

    train_epoch, valid_epoch = trainer._train_epoch, trainer._valid_epoch

    budget = spec.get("time_budget")

    def timed_train_epoch(*args, **kwargs):
        t = time.perf_counter()
        if budget and epoch_seconds:
            # stop at an epoch boundary when the next epoch (and its validation) would overrun
            per_epoch = (sum(epoch_seconds) + sum(valid_seconds)) / len(epoch_seconds)
            if t - clock["fit_start"] + per_epoch > budget:
                raise _TimeBudgetReached()
        result = train_epoch(*args, **kwargs)
        epoch_seconds.append(time.perf_counter() - t)
        return result

    def timed_valid_epoch(*args, **kwargs):
        t = time.perf_counter()
        score, result = valid_epoch(*args, **kwargs)
        now = time.perf_counter()
        valid_seconds.append(now - t)
        metrics = _metrics(result)
        clock["last_valid"] = metrics
        curve.append({
            "seconds": now - clock["fit_start"],
            "epoch": len(epoch_seconds) - 1,
            "ndcg@10": metrics.get("ndcg@10"),
            "recall@10": metrics.get("recall@10"),
            "valid_score": json_safe(float(score)),
            "is_best": False,
        })
        return score, result

    best_state = {}

    def on_validation(epoch_idx, valid_score):
        if curve:
            curve[-1]["epoch"] = int(epoch_idx)
            # RecBole's early stopping resets its counter exactly when the score improved
            curve[-1]["is_best"] = trainer.cur_step == 0
        if trainer.cur_step == 0:
            # the best weights stay in memory: no checkpoint file is written or read back
            best_state.clear()
            best_state.update({k: v.detach().clone() for k, v in model.state_dict().items()})
            clock["best_valid"] = clock.get("last_valid")

    trainer._train_epoch, trainer._valid_epoch = timed_train_epoch, timed_valid_epoch
    clock["fit_start"] = time.perf_counter()
    try:
        best_score, best_valid = trainer.fit(train_data, valid_data, saved=False,
                                             show_progress=config["show_progress"], callback_fn=on_validation)
        best_valid = _metrics(best_valid)
        out["stopped_by"] = "early_stopping" if len(epoch_seconds) < config["epochs"] else "epoch_cap"
    except _TimeBudgetReached:
        best_score, best_valid = trainer.best_valid_score, clock.get("best_valid") or {}
        out["stopped_by"] = "time_budget"
        print(f"time budget of {budget:g} s reached after {len(epoch_seconds)} epochs", flush=True)
    out["fit_seconds"] = time.perf_counter() - clock["fit_start"]
    out["epochs_run"] = len(epoch_seconds)
    out["best_valid"] = best_valid
    out["best_valid_score"] = json_safe(float(best_score))
    best = [c for c in curve if c["is_best"]]
    if best:
        out["epochs_to_best"] = best[-1]["epoch"] + 1
        out["seconds_to_best"] = best[-1]["seconds"]
    out["seconds_per_epoch"] = sum(epoch_seconds) / len(epoch_seconds) if epoch_seconds else None

    t = time.perf_counter()
    if best_state:
        model.load_state_dict(best_state)
    test_result = trainer.evaluate(test_data, load_best_model=False, show_progress=config["show_progress"])
    out["test_seconds"] = time.perf_counter() - t
    out["test"] = _metrics(test_result)
    print(f"best valid: {out['best_valid']}\ntest: {out['test']}", flush=True)


def worker_main(spec_path: str) -> int:
    """Entry point of the per-model process: reads a spec JSON, writes a result JSON."""
    import resource

    with open(spec_path) as fh:
        spec = json.load(fh)
    sys.argv = sys.argv[:1]  # RecBole's Config also reads --key=value from the command line
    t0 = time.perf_counter()
    out = {"error": None, "started_at": _now()}
    status = 0
    try:
        _run_model(spec, out)
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


def _worker_command(spec_path: str) -> list[str]:
    return [sys.executable, "-m", "recbole_lru.compare", "--_worker", spec_path]


def _log_tail(path: str, n: int = 6) -> str:
    try:
        with open(path, errors="replace") as fh:
            lines = [ln.rstrip() for ln in fh.readlines()[-200:] if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])


def run_worker(entry: ModelEntry, dataset: str, config: dict, data_dir: str | None, log_path: str,
               timeout: float | None = None, threads: int | None = None,
               time_budget: float | None = None) -> dict:
    """Run one model in a fresh process (its cwd a temporary folder); returns its result dict."""
    work = tempfile.mkdtemp(prefix=f"recbole-compare-{safe_name(entry.name)}-")
    try:
        spec = {
            "model": entry.model,
            "dataset": dataset,
            "config": dict(config, checkpoint_dir=os.path.join(work, "saved")),
            "data_dir": data_dir,
            "result_path": os.path.join(work, "result.json"),
            "threads": threads,
            "time_budget": time_budget,
        }
        spec_path = os.path.join(work, "spec.json")
        atomic_write_json(spec_path, spec)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([REPO_ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
        env["PYTHONUNBUFFERED"] = "1"
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        error = None
        with open(log_path, "w") as log:
            log.write(f"# {entry.name}: {' '.join(shlex.quote(c) for c in _worker_command(spec_path))}\n")
            log.flush()
            proc = subprocess.Popen(_worker_command(spec_path), cwd=work, stdout=log, stderr=subprocess.STDOUT,
                                    env=env)
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                rc = None
                error = f"timed out after {timeout:g} s"
            except BaseException:
                proc.kill()
                proc.wait()
                raise
        result = {}
        if os.path.isfile(spec["result_path"]):
            with open(spec["result_path"]) as fh:
                result = json.load(fh)
        if error is None and rc != 0 and not result.get("error"):
            if rc is not None and rc < 0:
                error = f"worker killed by signal {-rc} (out of memory?)"
            else:
                error = f"worker exited with status {rc}"
            tail = _log_tail(log_path)
            if tail:
                error += f": {tail}"
        if error:
            result["error"] = error
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ============================================================================================
# Summary files
# ============================================================================================
def _protocol_key(protocol: dict) -> dict:
    return {k: v for k, v in (protocol or {}).items() if k not in _PROTOCOL_LOCATION_KEYS}


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


def _fmt(value, spec="{:.4f}", none="–"):
    if value is None:
        return none
    try:
        return spec.format(value)
    except (ValueError, TypeError):
        return str(value)


def _fmt_params(n):
    if n is None:
        return "–"
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def render_markdown(summary: dict) -> str:
    """The summary as a Markdown table (one row per model)."""
    proto = summary.get("protocol") or {}
    lines = [f"# {summary.get('dataset')}: model comparison", ""]
    if proto:
        lines.append(
            f"Leave-one-out, full ranking{', history masked' if proto.get('mask_history') else ''}; "
            f"max length {proto.get('MAX_ITEM_LIST_LENGTH')}; early stopping on {proto.get('valid_metric')} "
            f"(patience {proto.get('stopping_step')}, at most {proto.get('epochs')} epochs"
            + (f" and {proto['time_budget_s']:g} s of training per model" if proto.get("time_budget_s") else "")
            + ")"
            + (f"; QUICK run (one epoch, at most {proto.get('quick_users')} users with their last "
               f"{proto.get('quick_items')} interactions)" if proto.get("quick") else "")
            + "."
        )
        if proto.get("shared_overrides"):
            lines.append(f"Shared overrides: `{json.dumps(proto['shared_overrides'])}`.")
        lines.append("")
    head = ["Model", "Regime", "Recall@10", "NDCG@10", "Recall@20", "NDCG@20", "MRR@10", "MRR@20",
            "Epochs to best", "s to best", "s/epoch", "Params", "Peak MB", "Error"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    other_protocol = []
    for name, row in summary.get("models", {}).items():
        test = row.get("test") or {}
        err = row.get("error")
        if err:
            err = re.sub(r"\s+", " ", str(err)).replace("|", "\\|")
            err = err if len(err) <= 140 else err[:137] + "..."
        if proto and _protocol_key(row.get("protocol")) != _protocol_key(proto):
            other_protocol.append(name)
        cells = [
            f"{name}*" if name in other_protocol else name,
            row.get("regime") or "–",
            *(_fmt(test.get(k)) for k in METRIC_KEYS),
            _fmt(row.get("epochs_to_best"), "{}")
            + (f" of {row['epochs_run']}, time budget" if row.get("stopped_by") == "time_budget" else ""),
            _fmt(row.get("seconds_to_best"), "{:.1f}"),
            _fmt(row.get("seconds_per_epoch"), "{:.2f}"),
            _fmt_params(row.get("params")),
            _fmt(row.get("peak_rss_mb"), "{:.0f}"),
            err or "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if other_protocol:
        lines += ["", "\\* ran under a different protocol (see `protocol` in its summary.json row): "
                  + ", ".join(other_protocol) + "."]
    runs = summary.get("runs") or []
    if runs:
        last = runs[-1]
        lines += ["", f"Last run: `{last.get('command')}` at {last.get('timestamp')}, commit "
                  f"{(last.get('git_commit') or 'unknown')[:12]}{' (dirty)' if last.get('git_dirty') else ''}, "
                  f"{(last.get('machine') or {}).get('platform')}, {(last.get('machine') or {}).get('cpu_count')} CPUs, "
                  f"torch {(last.get('machine') or {}).get('torch')}."]
    return "\n".join(lines) + "\n"


def plot_summary(summary: dict, folder: str) -> list[str]:
    """``valid_ndcg_vs_time.png`` and ``test_metrics.png`` in ``folder``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = summary.get("models", {})
    title = summary.get("dataset")
    paths = []

    fig, ax = plt.subplots(figsize=(8, 5))
    drawn = 0
    for name, row in models.items():
        pts = [c for c in (row.get("curve") or []) if c.get("ndcg@10") is not None]
        if not pts:
            continue
        xs, ys = [c["seconds"] for c in pts], [c["ndcg@10"] for c in pts]
        (line,) = ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.5, label=f"{name} ({row.get('regime')})")
        best = [c for c in pts if c.get("is_best")]
        if best:
            ax.plot([best[-1]["seconds"]], [best[-1]["ndcg@10"]], marker="*", markersize=12,
                    color=line.get_color())
        drawn += 1
    if drawn:
        ax.legend(fontsize=8)
        if max(c["seconds"] for r in models.values() for c in (r.get("curve") or [])) > 0:
            ax.set_xlim(left=0)
    else:
        ax.text(0.5, 0.5, "no validation results", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("wall-clock seconds since the start of training")
    ax.set_ylabel("validation NDCG@10")
    ax.set_title(f"{title}: validation NDCG@10 vs training time (★ best)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = os.path.join(folder, "valid_ndcg_vs_time.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    paths.append(path)

    fig, ax = plt.subplots(figsize=(max(8, 1.4 * len(METRIC_KEYS) + 0.25 * len(models)), 5))
    done = [(n, r) for n, r in models.items() if not r.get("error") and (r.get("test") or {}).get("ndcg@10") is not None]
    if done:
        width = 0.8 / len(done)
        for i, (name, row) in enumerate(done):
            xs = [j + (i - (len(done) - 1) / 2) * width for j in range(len(METRIC_KEYS))]
            ys = [row["test"].get(k) or 0.0 for k in METRIC_KEYS]
            ax.bar(xs, ys, width=width, label=name)
        ax.set_xticks(range(len(METRIC_KEYS)))
        ax.set_xticklabels([k.replace("recall", "Recall").replace("ndcg", "NDCG").replace("mrr", "MRR")
                            for k in METRIC_KEYS])
        ax.legend(fontsize=8, ncol=2 if len(done) > 5 else 1)
    else:
        ax.text(0.5, 0.5, "no test results", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylabel("test score")
    ax.set_title(f"{title}: test metrics (full ranking, leave-one-out)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = os.path.join(folder, "test_metrics.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    paths.append(path)
    return paths


@contextlib.contextmanager
def _summary_lock(folder: str):
    """An exclusive lock on a results folder, so that harness runs working on the same dataset
    at once (e.g. different models on different GPUs) never drop each other's rows."""
    with open(os.path.join(folder, ".summary.lock"), "w") as fh:
        try:
            import fcntl
        except ImportError:  # not on POSIX: no lock, as before
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _update_summary(folder: str, dataset: str, protocol: dict, run_info: dict, log, rows: dict | None = None,
                    plots: bool = True) -> dict:
    """Re-read summary.json under the lock, put this run's protocol, run record and ``rows`` in,
    write it back with its table and plots; returns the merged summary."""
    with _summary_lock(folder):
        summary = load_summary(os.path.join(folder, "summary.json"), dataset)
        summary["dataset"] = dataset
        summary["protocol"] = protocol
        if not any(r.get("timestamp") == run_info["timestamp"] and r.get("command") == run_info["command"]
                   for r in summary["runs"]):
            summary["runs"].append(run_info)
        summary["models"].update(rows or {})
        _write_outputs(summary, folder, log, plots=plots)
    return summary


def _write_outputs(summary: dict, folder: str, log, plots: bool = True) -> None:
    atomic_write_json(os.path.join(folder, "summary.json"), summary)
    _atomic_write_text(os.path.join(folder, "summary.md"), render_markdown(summary))
    if not plots:
        return
    try:
        plot_summary(summary, folder)
    except Exception as err:  # a plotting problem must not lose results
        log(f"[compare] plotting failed: {type(err).__name__}: {err}")


# ============================================================================================
# The comparison
# ============================================================================================
def _empty_row(entry: ModelEntry) -> dict:
    return {
        "model": entry.model,
        "regime": entry.regime or "prefix",
        "test": {k: None for k in METRIC_KEYS},
        "best_valid": {k: None for k in METRIC_KEYS},
        "epochs_to_best": None,
        "seconds_to_best": None,
        "seconds_per_epoch": None,
        "params": None,
        "error": None,
    }


def _make_row(entry, result, protocol, shared, run_info, wall, log_rel) -> dict:
    row = _empty_row(entry)
    row["regime"] = result.get("regime") or row["regime"]
    row["test"].update(result.get("test") or {})
    row["best_valid"].update(result.get("best_valid") or {})
    for key in ("epochs_to_best", "seconds_to_best", "seconds_per_epoch", "params", "peak_rss_mb",
                "epochs_run", "stopped_by", "best_valid_score", "epoch_seconds", "valid_seconds", "curve",
                "data_seconds", "fit_seconds", "test_seconds", "worker_seconds",
                "n_users", "n_items", "n_interactions", "n_train_rows", "dataset_class", "trainer_class",
                "started_at", "finished_at",
                "machine", "config", "traceback"):
        if result.get(key) is not None:
            row[key] = result[key]
    row["error"] = result.get("error") or entry.error
    row["overrides"] = dict(entry.overrides)
    row["protocol"] = protocol
    row["shared_config"] = shared
    row["wall_seconds"] = wall
    row["log"] = log_rel
    row["command"] = run_info["command"]
    row["git_commit"] = run_info["git_commit"]
    row["git_dirty"] = run_info["git_dirty"]
    row["timestamp"] = run_info["timestamp"]
    row.setdefault("machine", run_info["machine"])
    return row


def _check_model_names(entries: list[ModelEntry]) -> None:
    """Unknown model names become error rows at once instead of costing a process each."""
    from . import registry

    registry.register()
    from recbole.utils import get_model

    for entry in entries:
        if entry.error is None:
            try:
                get_model(entry.model)
            except Exception as err:  # noqa: BLE001 - recorded in the row
                entry.error = f"{type(err).__name__}: {err}"


def _is_done(row: dict | None, entry: ModelEntry, protocol: dict) -> bool:
    return (
        bool(row)
        and not row.get("error")
        and _protocol_key(row.get("protocol")) == _protocol_key(protocol)
        and row.get("overrides", {}) == json_safe(entry.overrides)
    )


def compare(dataset: str, models=None, data_path: str | None = None, out: str = "results",
            max_len: int | None = None, epochs: int = 200, stopping_step: int = 10,
            valid_metric: str = "Recall@10", mask_history: bool = False, quick: bool = False,
            quick_users: int = 200, quick_items: int = 30, force: bool = False, overrides: dict | None = None,
            model_configs=None, timeout: float | None = None, threads: int | None = None,
            time_budget: float | None = None, command: str | None = None, log=_print) -> dict:
    """Run ``models`` on ``dataset`` under one protocol; returns the summary dict (also written
    to ``<out>/<dataset>/summary.json``).

    Args:
        models: ``"LRURec,SASRec"``, a list of entries (``"LRURec:prefix"``), or None for
            :data:`DEFAULT_MODELS`.
        overrides: config applied to every model (after the protocol's keys).
        model_configs: ``["MODEL:key=value", ...]`` for single entries.
        quick: a few users (``quick_users``, each with at most their last ``quick_items``
            interactions) and one epoch, to check that everything runs.
        force: rerun models that already have a finished row.
        timeout: seconds per model before its process is killed (None: no limit).
        threads: ``torch.set_num_threads`` in each model's process.
        time_budget: training seconds per model; training stops at the last epoch boundary
            inside it and the model is tested with its best validation weights (None: no limit).
    """
    entries = parse_models(models if models is not None else DEFAULT_MODELS)
    apply_model_configs(entries, model_configs)
    _check_model_names(entries)
    overrides = dict(overrides or {})
    if quick:
        epochs = 1
    folder = os.path.join(out, dataset)
    os.makedirs(os.path.join(folder, "logs"), exist_ok=True)

    source_dir = resolve_data_dir(dataset, data_path)
    max_len = int(max_len) if max_len is not None else dataset_max_len(dataset)
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
    if source_dir and not _dataset_yaml_files(dataset) and "load_col" not in overrides:
        # RecBole's sample.yaml loads only user and item ids; a dataset without a YAML of its own
        # needs its time column for the time-ordered split, so load the whole .inter header.
        shared["load_col"] = {"inter": inter_columns(source_dir, dataset, overrides.get("field_separator", "\t"))}
    shared.update(overrides)

    run_info = {
        "command": command,
        "cwd": os.getcwd(),
        "timestamp": _now(),
        "machine": machine_info(),
        **git_info(),
        "models": [e.name for e in entries],
    }
    summary = _update_summary(folder, dataset, protocol, run_info, log, plots=False)

    t_all = time.perf_counter()
    log(f"[compare] {dataset}: {len(entries)} model(s) -> {os.path.abspath(folder)}"
        f"{' (quick)' if quick else ''}; data: {source_dir or 'RecBole default'}")
    scratch = None
    try:
        data_dir = source_dir
        todo = [e for e in entries if force or not _is_done(summary["models"].get(e.name), e, protocol)]
        if quick and todo and any(e.error is None for e in todo):
            if source_dir is None:
                raise FileNotFoundError(f"--quick needs the dataset file on disk: no {dataset}.inter found "
                                        f"under {data_path or 'dataset/ or ' + SHARED_DATASETS}")
            scratch = tempfile.mkdtemp(prefix=f"recbole-compare-data-{dataset}-")
            user_field = overrides.get("USER_ID_FIELD", "user_id")
            separator = overrides.get("field_separator", "\t")
            time_field = overrides.get("TIME_FIELD") or dataset_setting(dataset, "TIME_FIELD", "timestamp")
            data_dir, kept = write_user_subset(source_dir, dataset, scratch, quick_users, user_field, separator,
                                               max_per_user=quick_items, time_field=time_field)
            run_info["quick_users_kept"] = kept
            log(f"[compare] quick: {kept} users, their last {quick_items} interactions at most, 1 epoch")

        for i, entry in enumerate(entries, 1):
            tag = f"[{i}/{len(entries)}] {entry.name}"
            if not any(entry is e for e in todo):
                log(f"{tag}: already finished, skipped (--force reruns it)")
                continue
            log_path = os.path.join(folder, "logs", f"{safe_name(entry.name)}.log")
            log_rel = os.path.relpath(log_path, folder)
            t0 = time.perf_counter()
            if entry.error:
                result = {"error": entry.error}
            else:
                log(f"{tag}: started ({_dt.datetime.now().strftime('%H:%M:%S')}, log {log_path})")
                config = dict(shared)
                config.update(entry.overrides)
                result = run_worker(entry, dataset, config, data_dir, log_path, timeout=timeout, threads=threads,
                                    time_budget=time_budget)
            wall = time.perf_counter() - t0
            row = _make_row(entry, result, protocol, shared, run_info, wall, log_rel)
            summary = _update_summary(folder, dataset, protocol, run_info, log, rows={entry.name: row})
            if row["error"]:
                log(f"{tag}: FAILED after {wall:.1f}s: {row['error'][:300]}")
            else:
                t = row["test"]
                log(f"{tag}: finished in {wall:.1f}s ({row['regime']}): test Recall@10 {_fmt(t.get('recall@10'))} "
                    f"NDCG@10 {_fmt(t.get('ndcg@10'))}; best epoch {row.get('epochs_to_best')} of "
                    f"{row.get('epochs_run')}, {_fmt(row.get('seconds_per_epoch'), '{:.2f}')} s/epoch")
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    if not any(os.path.isfile(os.path.join(folder, f)) for f in ("valid_ndcg_vs_time.png", "test_metrics.png")):
        summary = _update_summary(folder, dataset, protocol, run_info, log)
    failed = [n for n in (e.name for e in entries) if summary["models"].get(n, {}).get("error")]
    log(f"[compare] done in {time.perf_counter() - t_all:.1f}s; {len(entries) - len(failed)} ok"
        + (f", {len(failed)} failed ({', '.join(failed)})" if failed else "")
        + f"; {os.path.join(folder, 'summary.md')}")
    return summary


# ============================================================================================
# Command line
# ============================================================================================
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m recbole_lru.compare",
        description="Train and evaluate several models on one dataset under one protocol (leave-one-out, "
                    "full ranking, Recall/NDCG/MRR@10,20, shared early stopping); each model in its own "
                    "process. Extra --key=value options override the config of every model.",
    )
    p.add_argument("--dataset", "-d", default="ml-100k", help="dataset name (default ml-100k)")
    p.add_argument("--data_path", default=None,
                   help="folder holding <dataset>/<dataset>.inter (default: ./dataset, then ../shared/datasets "
                        "beside the project, then RecBole's own ml-100k)")
    p.add_argument("--models", "-m", default=",".join(DEFAULT_MODELS),
                   help="comma-separated models, optionally MODEL:prefix or MODEL:whole_sequence "
                        f"(default {','.join(DEFAULT_MODELS)})")
    p.add_argument("--max_len", type=int, default=None,
                   help="MAX_ITEM_LIST_LENGTH for every model (default: the dataset YAML's)")
    p.add_argument("--epochs", type=int, default=200, help="epoch cap (default 200)")
    p.add_argument("--stopping_step", type=int, default=10, help="early-stopping patience in validations (default 10)")
    p.add_argument("--valid_metric", default="Recall@10", help="early-stopping metric (default Recall@10)")
    p.add_argument("--mask_history", action="store_true",
                   help="remove each user's input items from the full ranking (config mask_history: True)")
    p.add_argument("--model_config", action="append", default=[], metavar="MODEL:key=value",
                   help="config override for one model entry (repeatable)")
    p.add_argument("--out", default="results", help="output folder; results go to OUT/<dataset>/ (default results)")
    p.add_argument("--quick", action="store_true", help="a few users and one epoch, to check that everything runs")
    p.add_argument("--quick_users", type=int, default=200, help="users kept by --quick (default 200)")
    p.add_argument("--quick_items", type=int, default=30,
                   help="latest interactions kept per user by --quick (default 30)")
    p.add_argument("--force", action="store_true", help="rerun models that already have a finished row")
    p.add_argument("--timeout", type=float, default=None, help="seconds per model before it is killed")
    p.add_argument("--threads", type=int, default=None, help="torch threads in each model's process")
    p.add_argument("--time_budget", type=float, default=None,
                   help="training seconds per model: stop at the last epoch boundary inside it and test the "
                        "best validation weights (recorded as stopped_by: time_budget)")
    p.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    return p


def main(argv=None) -> int:
    """Command line; returns 0 when every model finished, 1 when some failed, 2 on bad arguments."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--_worker"] and len(argv) == 2:
        return worker_main(argv[1])
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    try:
        overrides = parse_overrides(rest)
        command = "python -m recbole_lru.compare " + " ".join(shlex.quote(a) for a in argv)
        summary = compare(
            args.dataset, args.models, data_path=args.data_path, out=args.out, max_len=args.max_len,
            epochs=args.epochs, stopping_step=args.stopping_step, valid_metric=args.valid_metric,
            mask_history=args.mask_history, quick=args.quick, quick_users=args.quick_users,
            quick_items=args.quick_items, force=args.force,
            overrides=overrides, model_configs=args.model_config, timeout=args.timeout, threads=args.threads,
            time_budget=args.time_budget, command=command,
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    entries = {e.name for e in parse_models(args.models)}
    failed = [n for n, row in summary["models"].items() if n in entries and row.get("error")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
