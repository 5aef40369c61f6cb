"""How each row is optimised, and the refusal of a shared setting that means different things.

RecBole builds the optimizer from ``learner``, ``learning_rate`` and ``weight_decay``: under
``adamw`` the decay is decoupled (AdamW), under ``adam``/``sgd``/``adagrad``/``rmsprop`` it is an L2
penalty added to the gradient of every parameter, embeddings included, and ``sparse_adam`` ignores it.
RecBole's own models default to ``learner: adam``; the plugin's LRURec and SASRecWS YAMLs to the
LRURec paper's AdamW (lr 1e-3, decay 1e-2 on weight matrices and embeddings only, clipping 5). So one
``--weight_decay=0.01`` given to every row is decoupled decay for some rows and an L2 penalty for
others: :func:`check_like_for_like` stops such a run before anything trains.
"""
from __future__ import annotations

import contextlib
import sys

__all__ = ["LEARNERS", "OPTIM_KEYS", "build_config", "decay_mode", "optimization_record", "resolve_optimization",
           "check_like_for_like", "optimization_of_row"]

LEARNERS = ("adam", "adamw", "sgd", "adagrad", "rmsprop", "sparse_adam")  # RecBole's _build_optimizer
OPTIM_KEYS = ("learner", "learning_rate", "weight_decay", "clip_grad_norm")
_L2 = ("adam", "sgd", "adagrad", "rmsprop")

# what the plugin's trainer decays when the model names its parameter groups
DECAY_WEIGHTS_ONLY = "weights and embeddings (no biases, LayerNorm or LRU log parameters)"
DECAY_ALL = "all parameters"


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


def decay_mode(learner, weight_decay) -> str:
    """``decoupled`` (adamw), ``L2`` (adam, sgd, adagrad, rmsprop) or ``none`` (no decay, or a
    learner that ignores it), for a weight decay under a RecBole ``learner``."""
    if not weight_decay:
        return "none"
    name = str(learner).lower()
    if name == "adamw":
        return "decoupled"
    return "L2" if name in _L2 else "none"


def optimization_record(config, decay_params: str | None = None) -> dict:
    """The optimisation of one row from its final config (a RecBole Config or its dict)."""
    learner = str(config["learner"]).lower()
    wd = float(config["weight_decay"] or 0.0)
    clip = config["clip_grad_norm"]
    mode = decay_mode(learner, wd)
    return {
        "optimizer": learner,
        "learning_rate": float(config["learning_rate"]),
        "weight_decay": wd,
        "decay": mode,
        "decay_params": None if mode == "none" else decay_params,
        "clip_grad_norm": dict(clip) if isinstance(clip, dict) else clip,
    }


def optimization_of_row(row: dict) -> dict | None:
    """A summary row's optimisation: its own record, else (rows written before the record existed)
    derived from its final config; None when neither is there."""
    if row.get("optimization"):
        return row["optimization"]
    config = row.get("config") or {}
    if config.get("learner") is None:
        return None
    return optimization_record(config)


@contextlib.contextmanager
def _no_command_line():
    # RecBole's Config reads --key=value from sys.argv; the harness's own flags are not config
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved


def resolve_optimization(entries, dataset: str, shared: dict) -> dict:
    """Each runnable entry's optimisation as RecBole will build it: its YAML, then ``shared``, then
    its own overrides. Returns ``{entry name: record}``; entries with an error are left out, and an
    entry whose config RecBole refuses gets that error (its row records it without running)."""
    from recbole.utils import get_model

    out = {}
    with _no_command_line():
        for entry in entries:
            if entry.error:
                continue
            try:
                config = build_config(entry.model, dataset, dict(shared, **entry.overrides))
            except Exception as err:  # noqa: BLE001 - a config RecBole refuses becomes that row's error
                entry.error = f"{type(err).__name__}: {err}"
                continue
            learner = str(config["learner"]).lower()
            if learner not in LEARNERS:
                raise ValueError(f"{entry.name}: learner {config['learner']!r} is not one of RecBole's optimizers "
                                 f"({', '.join(LEARNERS)}); RecBole would silently train it with plain Adam "
                                 f"instead. Set a known one (--optimizer adamw, or --model_config "
                                 f"{entry.name}:learner=adamw).")
            groups = hasattr(get_model(entry.model), "optimizer_param_groups")
            out[entry.name] = optimization_record(config, DECAY_WEIGHTS_ONLY if groups else DECAY_ALL)
    return out


def check_like_for_like(entries, records: dict, shared: dict) -> None:
    """Refuse a shared ``weight_decay`` that the rows' learners apply differently.

    Passes when every row applies it the same way (all decoupled, all L2, or no decay), or when every
    row names its learner itself (``--model_config ENTRY:learner=...``): then the difference is asked
    for. Otherwise raises one ValueError naming the rows on each side and the two fixes.
    """
    if not shared.get("weight_decay") or shared.get("learner"):
        return  # no shared decay, or one learner for every row: the decay means the same everywhere
    modes = {name: rec["decay"] for name, rec in records.items()}
    if len(set(modes.values())) < 2:
        return
    explicit = {e.name for e in entries if "learner" in e.overrides}
    if all(name in explicit for name in modes):
        return
    groups: dict[str, list[str]] = {}
    for name, mode in modes.items():
        groups.setdefault(f"{mode} ({records[name]['optimizer']})", []).append(name)
    sides = "; ".join(f"{how}: {', '.join(names)}" for how, names in sorted(groups.items()))
    # the fix to show: a row that would get an L2 penalty, moved to the decoupled decay of the others
    implicit = [n for n in modes if n not in explicit]
    example = next((n for n in implicit if modes[n] != "decoupled"), implicit[0])
    raise ValueError(
        f"--weight_decay={shared['weight_decay']} means different things for different rows, because their "
        f"optimizers differ: {sides}. Decoupled decay (adamw) and an L2 penalty (adam, sgd, ...) of the "
        f"same value are not the same regularisation, so the rows would not be comparable. Either give every "
        f"model one optimizer with --optimizer adamw (the LRURec paper's protocol), or say per model what "
        f"you want, e.g. --model_config {example}:learner=adamw (every row then names its learner)."
    )
