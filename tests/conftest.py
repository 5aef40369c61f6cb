"""Shared fixtures: every test runs in its own temporary folder (RecBole writes log/, saved/ and
log_tensorboard/ into the working directory) and tiny synthetic datasets in RecBole's format."""
import os
import random

# Triton's interpreter runs kernels on CPU tensors; it must be chosen before triton is imported.
try:
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")
except ImportError:  # pragma: no cover
    pass

import pytest

import recbole_lru  # noqa: F401  (registers the models)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATASETS = os.path.abspath(os.path.join(REPO, "..", "shared", "datasets"))


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    yield


def write_inter(folder, name, rows, header="user_id:token\titem_id:token\ttimestamp:float"):
    """Write ``folder/name/name.inter`` from (user, item, time) rows; returns ``folder``."""
    path = os.path.join(folder, name)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, f"{name}.inter"), "w") as fh:
        fh.write(header + "\n")
        for row in rows:
            fh.write("\t".join(str(v) for v in row) + "\n")
    return str(folder)


def tiny_rows(n_users=40, n_items=30, min_len=4, max_len=12, seed=0):
    """Random sequences with a learnable pattern: each next item = previous + 1 (mod n_items)."""
    rng = random.Random(seed)
    rows = []
    for u in range(1, n_users + 1):
        start = rng.randrange(n_items)
        for t in range(rng.randint(min_len, max_len)):
            rows.append((u, (start + t) % n_items + 1, 1000 * u + t))
    return rows


@pytest.fixture
def tiny_data(tmp_path):
    """Config overrides for a tiny dataset named 'tiny' (40 users, 30 items)."""
    data_path = write_inter(tmp_path / "data", "tiny", tiny_rows())
    return {
        "data_path": data_path,
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "epochs": 1,
        "train_batch_size": 64,
        "eval_batch_size": 64,
        "show_progress": False,
        "checkpoint_dir": str(tmp_path / "saved"),
        "hidden_size": 16,
        "n_heads": 2,
        "inner_size": 32,
        "MAX_ITEM_LIST_LENGTH": 10,
        "seed": 2024,
        "reproducibility": True,
        "metrics": ["Recall", "NDCG"],
        "topk": [10],
        "valid_metric": "Recall@10",
    }


class FakeDataset:
    """What SequentialRecommender.__init__ reads from a dataset: the item count."""

    def __init__(self, n_items):
        self.n_items = n_items

    def num(self, field):
        return self.n_items


class FakeConfig(dict):
    """A dict that answers None for missing keys, as RecBole's Config does."""

    def __getitem__(self, key):
        return self.get(key)


def build_model(name, n_items=40, **overrides):
    """A plugin model built without a dataset on disk (for op-level and model-level tests)."""
    import yaml

    from recbole_lru.registry import find_yaml, MODELS
    import importlib

    config = FakeConfig(yaml.safe_load(open(find_yaml("model", name))))
    config.update({
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "LIST_SUFFIX": "_list",
        "ITEM_LIST_LENGTH_FIELD": "item_length", "NEG_PREFIX": "neg_", "MAX_ITEM_LIST_LENGTH": 20,
        "device": "cpu", "hidden_size": 16, "n_heads": 2, "inner_size": 32,
        "layer_norm_eps": float(config.get("layer_norm_eps") or 1e-12),
    })
    config.update(overrides)
    cls = getattr(importlib.import_module(MODELS[name]), name)
    return cls(config, FakeDataset(n_items))
