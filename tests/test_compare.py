"""The comparison harness: one real quick run (two models and one that fails), then the resume,
failure and parsing rules with the per-model process replaced by a stand-in."""
import json
import os
import sys

import pytest

from recbole_lru import compare
from conftest import tiny_rows, write_inter

SMALL = ["--hidden_size=16", "--n_heads=2", "--inner_size=32", "--train_batch_size=64", "--eval_batch_size=64"]
ROW_KEYS = {"regime", "test", "best_valid", "epochs_to_best", "seconds_to_best", "seconds_per_epoch", "params", "error"}


@pytest.fixture
def tiny_path(tmp_path):
    return write_inter(tmp_path / "data", "tiny", tiny_rows())


def _argv(data_path, out, models, *extra):
    return ["--dataset", "tiny", "--data_path", data_path, "--models", models, "--quick", "--out", str(out),
            "--max_len", "10", *SMALL, *extra]


def _fake_result(**kw):
    result = {
        "error": None, "regime": "prefix", "params": 10, "epochs_to_best": 1, "seconds_to_best": 0.5,
        "seconds_per_epoch": 0.25, "epochs_run": 1, "peak_rss_mb": 100.0,
        "test": {k: 0.1 for k in compare.METRIC_KEYS}, "best_valid": {k: 0.2 for k in compare.METRIC_KEYS},
        "curve": [{"seconds": 0.5, "epoch": 0, "ndcg@10": 0.2, "recall@10": 0.3, "valid_score": 0.3,
                   "is_best": True}],
    }
    result.update(kw)
    return result


def test_quick_run_records_rows_and_resumes(tiny_path, tmp_path, monkeypatch, capsys):
    out = tmp_path / "results"
    rc = compare.main(_argv(tiny_path, out, "LRURec,SASRec,NoSuchModel", "--mask_history"))
    assert rc == 1  # one model failed on purpose; the others still ran
    folder = out / "tiny"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["dataset"] == "tiny"
    assert summary["protocol"]["MAX_ITEM_LIST_LENGTH"] == 10
    assert summary["protocol"]["mask_history"] is True
    assert summary["protocol"]["epochs"] == 1
    assert set(summary["models"]) == {"LRURec", "SASRec", "NoSuchModel"}
    for name in ("LRURec", "SASRec"):
        row = summary["models"][name]
        assert ROW_KEYS <= set(row), name
        assert row["error"] is None, row["error"]
        for part in ("test", "best_valid"):
            assert set(compare.METRIC_KEYS) <= set(row[part])
            assert all(isinstance(row[part][k], float) for k in compare.METRIC_KEYS)
        assert row["epochs_to_best"] == 1
        assert isinstance(row["params"], int) and row["params"] > 0
        assert row["seconds_per_epoch"] > 0 and row["seconds_to_best"] > 0
        assert row["peak_rss_mb"] > 0
        assert row["curve"] and {"seconds", "epoch", "ndcg@10", "recall@10"} <= set(row["curve"][0])
        assert row["config"]["mask_history"] is True
        assert row["config"]["MAX_ITEM_LIST_LENGTH"] == 10
        assert row["config"]["train_neg_sample_args"]["distribution"] == "none"  # CE loss: no sampling
        assert row["git_commit"] is None or len(row["git_commit"]) == 40
        assert row["machine"]["cpu_count"]
        assert "recbole_lru.compare" in row["command"]
        assert (folder / row["log"]).is_file()
    assert summary["models"]["LRURec"]["regime"] == "whole_sequence"  # LRURec's default
    assert summary["models"]["SASRec"]["regime"] == "prefix"
    bad = summary["models"]["NoSuchModel"]
    assert ROW_KEYS <= set(bad) and "NoSuchModel" in bad["error"]
    assert bad["test"]["ndcg@10"] is None
    assert summary["runs"] and summary["runs"][-1]["machine"]["torch"]

    md = (folder / "summary.md").read_text()
    assert "| Model | Regime | Recall@10 | NDCG@10 |" in md
    for name in ("LRURec", "SASRec", "NoSuchModel"):
        assert f"| {name} |" in md
    for png in ("valid_ndcg_vs_time.png", "test_metrics.png"):
        assert (folder / png).read_bytes()[:4] == b"\x89PNG"
    # RecBole's own outputs stay out of the results and the working directory
    assert not list(folder.rglob("*.pth")) and not (folder / "saved").exists()
    assert not (tmp_path / "saved").exists() and not (tmp_path / "log").exists()

    # a rerun skips the finished models and runs the others (a failed one is retried)
    calls = []

    def fake_worker(entry, *args, **kwargs):
        calls.append(entry.name)
        return {"error": "worker exited with status 1"}

    monkeypatch.setattr(compare, "run_worker", fake_worker)
    capsys.readouterr()
    assert compare.main(_argv(tiny_path, out, "LRURec,SASRec,NoSuchModel,GRU4Rec", "--mask_history")) == 1
    assert calls == ["GRU4Rec"]
    printed = capsys.readouterr().out
    assert printed.count("already finished") == 2 and "NoSuchModel: FAILED" in printed
    again = json.loads((folder / "summary.json").read_text())
    assert again["models"]["LRURec"] == summary["models"]["LRURec"]
    assert again["models"]["SASRec"] == summary["models"]["SASRec"]
    assert again["models"]["GRU4Rec"]["error"] == "worker exited with status 1"
    assert "NoSuchModel" in again["models"]["NoSuchModel"]["error"]
    assert len(again["runs"]) == 2


def test_protocol_change_and_force_rerun(tiny_path, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(compare, "run_worker", lambda entry, *a, **k: calls.append(entry.name) or _fake_result())
    out = tmp_path / "r"
    assert compare.main(_argv(tiny_path, out, "LRURec,GRU4Rec")) == 0
    assert compare.main(_argv(tiny_path, out, "LRURec,GRU4Rec")) == 0
    assert calls == ["LRURec", "GRU4Rec"]
    assert compare.main(_argv(tiny_path, out, "LRURec,GRU4Rec", "--force")) == 0
    assert calls[2:] == ["LRURec", "GRU4Rec"]
    # another protocol (history masking) reruns; a per-model override reruns only that model
    assert compare.main(_argv(tiny_path, out, "LRURec,GRU4Rec", "--mask_history")) == 0
    assert calls[4:] == ["LRURec", "GRU4Rec"]
    assert compare.main(_argv(tiny_path, out, "LRURec,GRU4Rec", "--mask_history",
                              "--model_config", "GRU4Rec:num_layers=2")) == 0
    assert calls[6:] == ["GRU4Rec"]
    summary = json.loads((out / "tiny" / "summary.json").read_text())
    assert summary["models"]["GRU4Rec"]["overrides"] == {"num_layers": 2}


def test_concurrent_runs_on_one_dataset_keep_each_others_rows(tiny_path, tmp_path, monkeypatch):
    out = tmp_path / "r"
    inner_rc = []

    def fake(entry, *a, **k):
        if entry.name == "LRURec":
            # another harness finishes NARM on the same dataset while this one is training LRURec
            inner_rc.append(compare.main(_argv(tiny_path, out, "NARM")))
        return _fake_result()

    monkeypatch.setattr(compare, "run_worker", fake)
    assert compare.main(_argv(tiny_path, out, "LRURec,GRU4Rec")) == 0
    assert inner_rc == [0]
    summary = json.loads((out / "tiny" / "summary.json").read_text())
    assert set(summary["models"]) == {"LRURec", "GRU4Rec", "NARM"}
    assert len(summary["runs"]) == 2
    assert "NARM" in (out / "tiny" / "summary.md").read_text()


def test_worker_crash_is_recorded_and_the_rest_go_on(tiny_path, tmp_path, monkeypatch):
    def command(spec_path):
        spec = json.load(open(spec_path))
        if spec["model"] == "GRU4Rec":
            return [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"]
        code = f"open({spec['result_path']!r}, 'w').write({json.dumps(_fake_result())!r})"
        return [sys.executable, "-c", code]

    monkeypatch.setattr(compare, "_worker_command", command)
    out = tmp_path / "r"
    assert compare.main(_argv(tiny_path, out, "GRU4Rec,NARM")) == 1
    summary = json.loads((out / "tiny" / "summary.json").read_text())
    err = summary["models"]["GRU4Rec"]["error"]
    assert "status 3" in err and "boom" in err
    assert summary["models"]["NARM"]["error"] is None
    assert summary["models"]["NARM"]["test"]["recall@10"] == 0.1
    assert "boom" in (out / "tiny" / "logs" / "GRU4Rec.log").read_text()


def test_model_entries_and_regimes():
    entries = compare.parse_models("LRURec:prefix,LRURec:whole_sequence,SASRec:whole_sequence,LinRec:whole_sequence,"
                                   "BPR:whole_sequence,SASRec,LRURec:prefix")
    by = {e.name: e for e in entries}
    assert list(by) == ["LRURec:prefix", "LRURec:whole_sequence", "SASRec:whole_sequence",
                        "LinRec:whole_sequence", "BPR:whole_sequence", "SASRec"]
    assert by["LRURec:prefix"].overrides == {"train_mode": "prefix"}
    assert by["SASRec:whole_sequence"].model == "SASRecWS"
    assert by["LinRec:whole_sequence"].overrides == {"train_mode": "whole_sequence", "causal": True,
                                                     "train_batch_size": 128}
    assert by["BPR:whole_sequence"].error and by["SASRec"].error is None
    with pytest.raises(ValueError):
        compare.parse_models("LRURec:sideways")

    compare.apply_model_configs(entries, ["LRURec:hidden_size=32", "LRURec:prefix:n_layers=1",
                                          "SASRec:hidden_dropout_prob=0.3"])
    assert by["LRURec:prefix"].overrides == {"train_mode": "prefix", "hidden_size": 32, "n_layers": 1}
    assert by["LRURec:whole_sequence"].overrides["hidden_size"] == 32
    assert "n_layers" not in by["LRURec:whole_sequence"].overrides
    assert by["SASRec"].overrides == {"hidden_dropout_prob": 0.3}
    with pytest.raises(ValueError):
        compare.apply_model_configs(entries, ["Caser:L=3"])
    with pytest.raises(ValueError):
        compare.apply_model_configs(entries, ["hidden_size=3"])


def test_labelled_entries_are_rows_of_their_own():
    entries = compare.parse_models("LRURec,LRURec@dropout0.6,SASRec:whole_sequence@long,LRURec@dropout0.6")
    by = {e.name: e for e in entries}
    assert list(by) == ["LRURec", "LRURec@dropout0.6", "SASRec:whole_sequence@long"]
    assert by["LRURec@dropout0.6"].model == "LRURec"
    assert by["SASRec:whole_sequence@long"].model == "SASRecWS"
    compare.apply_model_configs(entries, ["LRURec@dropout0.6:hidden_dropout_prob=0.6", "LRURec:n_layers=1"])
    assert by["LRURec@dropout0.6"].overrides == {"hidden_dropout_prob": 0.6}
    assert by["LRURec"].overrides == {"n_layers": 1}  # a display name matches its own entry only
    assert compare.safe_name("LRURec@dropout0.6") == "LRURec_dropout0.6"
    with pytest.raises(ValueError, match="after '@'"):
        compare.parse_models("LRURec@")


def test_unsupported_regime_row_without_running(tiny_path, tmp_path, monkeypatch):
    monkeypatch.setattr(compare, "run_worker", lambda *a, **k: pytest.fail("must not run"))
    assert compare.main(_argv(tiny_path, tmp_path / "r", "BPR:whole_sequence")) == 1
    row = json.loads((tmp_path / "r" / "tiny" / "summary.json").read_text())["models"]["BPR:whole_sequence"]
    assert "no whole_sequence" in row["error"]


def test_quick_subset_and_bad_arguments(tmp_path):
    src = write_inter(tmp_path / "d", "x", tiny_rows(n_users=30))
    folder, kept = compare.write_user_subset(os.path.join(src, "x"), "x", str(tmp_path / "sub"), 7)
    lines = open(os.path.join(folder, "x.inter")).read().splitlines()
    assert kept == 7 and lines[0].startswith("user_id:token")
    assert len({ln.split("\t")[0] for ln in lines[1:]}) == 7
    rows = tiny_rows(n_users=30)
    rows = rows[::-1]  # file order is not time order
    src = write_inter(tmp_path / "e", "y", rows)
    folder, kept = compare.write_user_subset(os.path.join(src, "y"), "y", str(tmp_path / "sub2"), 5,
                                             max_per_user=3, time_field="timestamp")
    got = {}
    for ln in open(os.path.join(folder, "y.inter")).read().splitlines()[1:]:
        u, _, t = ln.split("\t")
        got.setdefault(u, []).append(int(t))
    assert kept == 5 and len(got) == 5
    for u, times in got.items():
        latest = sorted(t for (uu, _, t) in rows if str(uu) == u)[-3:]
        assert sorted(times) == latest
    assert compare.main(["--dataset", "tiny", "--models", "LRURec", "--bogus"]) == 2
    assert compare.json_safe({"a": float("nan"), "b": (1, 2)}) == {"a": None, "b": [1, 2]}


def test_time_budget_stops_at_an_epoch_boundary_and_tests_best_weights(tiny_path, tmp_path):
    out = tmp_path / "results"
    argv = ["--dataset", "tiny", "--data_path", tiny_path, "--models", "LRURec", "--out", str(out),
            "--max_len", "10", "--epochs", "50", "--time_budget", "0.001", *SMALL]
    assert compare.main(argv) == 0
    summary = json.loads((out / "tiny" / "summary.json").read_text())
    assert summary["protocol"]["time_budget_s"] == 0.001
    row = summary["models"]["LRURec"]
    assert row["error"] is None, row["error"]
    # the first epoch always runs; the budget then stops training before the second
    assert row["stopped_by"] == "time_budget" and row["epochs_run"] == 1
    assert row["epochs_to_best"] == 1
    assert all(isinstance(row[part][k], float) for part in ("test", "best_valid") for k in compare.METRIC_KEYS)
    assert "time budget" in (out / "tiny" / "summary.md").read_text()
