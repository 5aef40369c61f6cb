"""What the harness tests share: tiny data, the small network settings, a stand-in result."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/, for conftest

from conftest import tiny_rows, write_inter  # noqa: E402

from recbole_lru.compare import METRIC_KEYS  # noqa: E402

SMALL = ["--hidden_size=16", "--n_heads=2", "--inner_size=32", "--train_batch_size=64", "--eval_batch_size=64"]
ROW_KEYS = {"regime", "test", "best_valid", "epochs_to_best", "seconds_to_best", "seconds_per_epoch", "params",
            "optimization", "error"}


def tiny_path(tmp_path, name="tiny", **kw):
    return write_inter(tmp_path / "data", name, tiny_rows(**kw))


def argv(data_path, out, models, *extra, quick=True):
    return (["--dataset", "tiny", "--data_path", data_path, "--models", models, "--out", str(out), "--max_len", "10"]
            + (["--quick"] if quick else []) + SMALL + list(extra))


def fake_result(**kw):
    result = {
        "error": None, "regime": "prefix", "params": 10, "epochs_to_best": 1, "seconds_to_best": 0.5,
        "seconds_per_epoch": 0.25, "epochs_run": 1, "peak_rss_mb": 100.0,
        "test": {k: 0.1 for k in METRIC_KEYS}, "best_valid": {k: 0.2 for k in METRIC_KEYS},
        "curve": [{"seconds": 0.5, "epoch": 0, "ndcg@10": 0.2, "recall@10": 0.3, "valid_score": 0.3,
                   "is_best": True}],
    }
    result.update(kw)
    return result
