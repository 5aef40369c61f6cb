"""What the benchmarks and the tests share: models built through RecBole's real Config on a tiny
on-disk catalogue, optimizers as the trainer builds them, real-shaped batches, timing, and result
files stamped with the machine and the code's git state (``recbole_lru.provenance``).

``build_model(name, n_items, **overrides)`` builds any plugin or RecBole sequential model exactly as
RecBole's pipeline does (``Config`` -> ``create_dataset`` -> ``model(config, dataset)``); the
dataset is a generated file holding ``n_items - 1`` items (RecBole counts the padding id 0 in
``n_items``), so the catalogue has the size a benchmark asks for and nothing is faked.
"""
from __future__ import annotations

import functools
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

__all__ = ["REPO", "build_config", "build_model", "optimizer_for", "make_batch", "user_counts", "training_rows",
           "synthetic_counts", "Clock", "median", "ratio", "log", "result_header", "write_result"]

# a catalogue file with one interaction per item, this many per user (any value >= 3 gives every
# user a train/valid/test split; the benchmarks never train on it, they only need its item count)
_ITEMS_PER_USER = 50
_LOAD_COL = {"inter": ["user_id", "item_id", "timestamp"]}


@functools.lru_cache(maxsize=None)
def _catalogue_folder(n_items: int) -> tuple[str, str]:
    """(data_path, dataset name) of a generated dataset with items 1..n_items-1, written once per
    process under a temporary folder."""
    if n_items < 2:
        raise ValueError(f"n_items counts the padding id 0, so it must be >= 2; got {n_items}")
    root = tempfile.mkdtemp(prefix="recbole-lru-catalogue-")
    name = f"catalogue{n_items}"
    os.makedirs(os.path.join(root, name))
    with open(os.path.join(root, name, f"{name}.inter"), "w") as fh:
        fh.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for item in range(1, n_items):
            fh.write(f"{(item - 1) // _ITEMS_PER_USER + 1}\t{item}\t{item}\n")
    return root, name


def _model_class(name: str):
    import importlib

    import recbole_lru

    if hasattr(recbole_lru, name):
        return getattr(recbole_lru, name)
    return getattr(importlib.import_module(f"recbole.model.sequential_recommender.{name.lower()}"), name)


def build_config(name: str, n_items: int, **overrides):
    """RecBole's Config for model ``name`` (its YAML, RecBole's defaults) on a catalogue of ``n_items``
    ids; ``overrides`` rank highest, as a config_dict does."""
    from recbole.config import Config

    data_path, dataset = _catalogue_folder(n_items)
    config_dict = {"data_path": data_path, "load_col": _LOAD_COL, "use_gpu": False, "device": "cpu",
                   "show_progress": False, "save_dataset": False, "save_dataloaders": False}
    # the sampler each loss needs unless the caller says otherwise: none for CE, one uniform negative per
    # row for BPR (what RecBole's prefix rows carry)
    if overrides.get("loss_type", "CE") == "CE":
        config_dict["train_neg_sample_args"] = None
    else:
        config_dict["train_neg_sample_args"] = {"distribution": "uniform", "sample_num": 1}
    config_dict.update(overrides)
    # RecBole's Config also reads --key=value from sys.argv (eval-ing each value): a benchmark's or
    # pytest's own flags are not config keys
    saved, sys.argv = sys.argv, sys.argv[:1]
    try:
        return Config(model=_model_class(name), dataset=dataset, config_dict=config_dict)
    finally:
        sys.argv = saved


@functools.lru_cache(maxsize=None)
def _dataset(name: str, n_items: int):
    """RecBole's dataset of the model's class on the catalogue file (built once per model and size)."""
    from recbole.data import create_dataset

    return create_dataset(build_config(name, n_items))


def build_model(name: str, n_items: int, seed: int = 0, **overrides):
    """(model, config) as RecBole's pipeline builds them; ``n_items`` counts the padding id 0."""
    config = build_config(name, n_items, **overrides)
    dataset = _dataset(name, n_items)
    torch.manual_seed(seed)
    return _model_class(name)(config, dataset), config


def optimizer_for(model, config):
    """The optimizer the trainer builds: the model's parameter groups under ``learner``."""
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


def user_counts(data_path, name):
    """Interactions per user in ``<data_path>/<name>/<name>.inter`` (None when the file is missing)."""
    path = os.path.join(data_path, name, f"{name}.inter")
    if not os.path.exists(path):
        return None
    import pandas as pd

    return pd.read_csv(path, sep="\t", usecols=[0]).iloc[:, 0].value_counts().to_numpy()


def training_rows(counts, max_len):
    """Input lengths of the training rows of both regimes under RecBole's leave-one-out split.

    A user with n interactions has prefix rows i = 1..n-1 (input = the last min(i, L) items before
    item i); the last is the test row, the one before it validation, i = 1..n-3 train. The
    whole-sequence regime keeps the rows ending at i = n-3, n-3-L, ... (windows of L targets).
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


class Clock:
    """Wall and process-CPU seconds of a block: ``with Clock() as c: ...; c.cpu, c.wall``."""

    def __enter__(self):
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self._w
        self.cpu = time.process_time() - self._c


def median(xs):
    return statistics.median(xs) if len(xs) else None


def ratio(a, b):
    return None if a is None or b is None or not b else a / b


def log(tag, msg):
    print(f"[{tag} {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def result_header(script: str, argv) -> dict:
    """The provenance every result file starts with: command, machine, git state of the checkout."""
    from recbole_lru.provenance import git_info, machine_info

    rel = os.path.relpath(os.path.abspath(script), REPO)
    return {"command": " ".join(["python", rel] + list(argv)), "machine": machine_info(), **git_info(REPO)}


def write_result(path, result) -> None:
    """``result`` as JSON (through ``json_safe``), written atomically; the folder is created."""
    from recbole_lru.provenance import atomic_write_json

    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    atomic_write_json(path, result)
