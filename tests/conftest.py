"""Shared fixtures: every test runs in its own temporary folder (RecBole writes log/, saved/ and
log_tensorboard/ into the working directory) and tiny synthetic datasets in RecBole's format."""
import os
import random
import sys

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
if REPO not in sys.path:  # benchmarks.common, shared with the benchmarks
    sys.path.insert(0, REPO)
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


def build_model(name, n_items=40, **overrides):
    """A model as RecBole's pipeline builds it (real Config, the model's YAML, a generated catalogue of
    ``n_items`` ids counting the padding 0), small by default: the builder the benchmarks share."""
    from benchmarks.common import build_model as _build

    config = {"MAX_ITEM_LIST_LENGTH": 20, "hidden_size": 16, "n_heads": 2, "inner_size": 32}
    config.update(overrides)
    model, _ = _build(name, n_items, **config)
    return model
