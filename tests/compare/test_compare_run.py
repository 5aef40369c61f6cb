"""The harness end to end on tiny data (each model in this process), then its bookkeeping rules
(skipping finished rows, protocol changes, concurrent runs, where files go) with the model run
replaced by a stand-in."""
import json
import os

import pytest

from compare_helpers import ROW_KEYS, argv, fake_result, tiny_path
from recbole_lru.compare import METRIC_KEYS, cli, data, report, run


@pytest.fixture
def no_plots(monkeypatch):
    """For the bookkeeping tests: drawing the plots after every row is most of their time (the
    plots themselves are checked in the end-to-end test and in test_compare_report.py)."""
    monkeypatch.setattr(report, "plot_summary", lambda summary, folder: [])


def test_quick_run_records_rows_and_skips_them_next_time(tmp_path, monkeypatch, capsys):
    out = tmp_path / "results"
    path = tiny_path(tmp_path)
    rc = cli.main(argv(path, out, "LRURec,SASRec,NoSuchModel", "--mask_history", "--in_process"))
    assert rc == 1  # one model failed on purpose; the others still ran
    folder = out / "quick" / "tiny"  # a quick run never writes where a full run's rows are
    assert not (out / "tiny").exists()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["dataset"] == "tiny"
    assert summary["protocol"]["MAX_ITEM_LIST_LENGTH"] == 10
    assert summary["protocol"]["mask_history"] is True and summary["protocol"]["quick"] is True
    assert summary["protocol"]["epochs"] == 1
    assert set(summary["models"]) == {"LRURec", "SASRec", "NoSuchModel"}
    for name in ("LRURec", "SASRec"):
        row = summary["models"][name]
        assert ROW_KEYS <= set(row), name
        assert row["error"] is None, row["error"]
        for part in ("test", "best_valid"):
            assert set(METRIC_KEYS) <= set(row[part])
            assert all(isinstance(row[part][k], float) for k in METRIC_KEYS)
        assert row["epochs_to_best"] == 1 and row["epochs_run"] == 1
        assert isinstance(row["params"], int) and row["params"] > 0
        assert row["seconds_per_epoch"] > 0 and row["seconds_to_best"] > 0
        assert row["peak_rss_mb"] > 0
        assert row["curve"] and {"seconds", "epoch", "ndcg@10", "recall@10"} <= set(row["curve"][0])
        assert row["config"]["mask_history"] is True
        assert row["config"]["MAX_ITEM_LIST_LENGTH"] == 10
        assert row["config"]["train_neg_sample_args"]["distribution"] == "none"  # CE loss: no sampling
        assert row["resumable"] is True and row["resumed_at_epochs"] == []
        assert row["git_commit"] is None or len(row["git_commit"]) == 40
        assert row["machine"]["cpu_count"]
        assert "recbole_lru.compare" in row["command"]
        assert (folder / row["log"]).is_file()
    lru, sas = summary["models"]["LRURec"], summary["models"]["SASRec"]
    assert lru["regime"] == "whole_sequence" and sas["regime"] == "prefix"
    assert lru["optimization"]["optimizer"] == "adamw" and lru["optimization"]["decay"] == "decoupled"
    assert sas["optimization"]["optimizer"] == "adam" and sas["optimization"]["decay"] == "none"
    assert sas["trainer_class"] == "recbole.trainer.trainer.Trainer"  # what get_trainer gave
    bad = summary["models"]["NoSuchModel"]
    assert ROW_KEYS <= set(bad) and "NoSuchModel" in bad["error"]
    assert bad["test"]["ndcg@10"] is None
    assert summary["runs"] and summary["runs"][-1]["machine"]["torch"]

    md = (folder / "summary.md").read_text()
    assert "| Model | Regime | Recall@10 | NDCG@10 |" in md and "| Optimizer | lr | Weight decay | Clip |" in md
    for name in ("LRURec", "SASRec", "NoSuchModel"):
        assert f"| {name} |" in md
    assert "not optimised alike" in md
    for png in ("valid_ndcg_vs_time.png", "test_metrics.png"):
        assert (folder / png).read_bytes()[:4] == b"\x89PNG"
    # finished models leave no checkpoints or work folders; RecBole's outputs stay out of the cwd
    assert not list(out.rglob("*.pth")) and not (folder / ".work").exists()
    assert not (tmp_path / "saved").exists() and not (tmp_path / "log").exists()

    # a rerun skips the finished models and runs the others (a failed one is retried)
    calls = []

    def fake_worker(entry, *args, **kwargs):
        calls.append(entry.name)
        return {"error": "worker exited with status 1"}

    monkeypatch.setattr(run.runner, "run_worker", fake_worker)
    capsys.readouterr()
    assert cli.main(argv(path, out, "LRURec,SASRec,NoSuchModel,GRU4Rec", "--mask_history")) == 1
    assert calls == ["GRU4Rec"]
    printed = capsys.readouterr().out
    assert printed.count("already finished") == 2 and "NoSuchModel: FAILED" in printed
    again = json.loads((folder / "summary.json").read_text())
    assert again["models"]["LRURec"] == summary["models"]["LRURec"]
    assert again["models"]["SASRec"] == summary["models"]["SASRec"]
    assert again["models"]["GRU4Rec"]["error"] == "worker exited with status 1"
    assert len(again["runs"]) == 2


def test_protocol_change_and_force_rerun(tmp_path, monkeypatch, no_plots):
    calls = []
    monkeypatch.setattr(run.runner, "run_worker", lambda entry, *a, **k: calls.append(entry.name) or fake_result())
    path, out = tiny_path(tmp_path), tmp_path / "r"
    assert cli.main(argv(path, out, "LRURec,GRU4Rec")) == 0
    assert cli.main(argv(path, out, "LRURec,GRU4Rec")) == 0
    assert calls == ["LRURec", "GRU4Rec"]
    assert cli.main(argv(path, out, "LRURec,GRU4Rec", "--force")) == 0
    assert calls[2:] == ["LRURec", "GRU4Rec"]
    # another protocol (history masking) reruns; a per-model override reruns only that model
    assert cli.main(argv(path, out, "LRURec,GRU4Rec", "--mask_history")) == 0
    assert calls[4:] == ["LRURec", "GRU4Rec"]
    assert cli.main(argv(path, out, "LRURec,GRU4Rec", "--mask_history", "--model_config", "GRU4Rec:num_layers=2")) == 0
    assert calls[6:] == ["GRU4Rec"]
    summary = json.loads((out / "quick" / "tiny" / "summary.json").read_text())
    assert summary["models"]["GRU4Rec"]["overrides"] == {"num_layers": 2}


def test_rows_of_an_older_harness_stay_current_under_new_protocol_keys(tmp_path, monkeypatch, no_plots):
    calls = []
    monkeypatch.setattr(run.runner, "run_worker", lambda entry, *a, **k: calls.append(entry.name) or fake_result())
    path, out = tiny_path(tmp_path), tmp_path / "r"
    assert cli.main(argv(path, out, "GRU4Rec", quick=False)) == 0
    file = out / "tiny" / "summary.json"
    summary = json.loads(file.read_text())
    for row in [summary] + list(summary["models"].values()):
        del row["protocol"]["optimizer"]  # a summary written before --optimizer existed
    file.write_text(json.dumps(summary))
    assert cli.main(argv(path, out, "GRU4Rec", quick=False)) == 0
    assert calls == ["GRU4Rec"]
    assert cli.main(argv(path, out, "GRU4Rec", "--optimizer", "adamw", quick=False)) == 0
    assert calls == ["GRU4Rec", "GRU4Rec"]  # a protocol that sets one optimizer is another protocol


def test_concurrent_runs_on_one_dataset_keep_each_others_rows(tmp_path, monkeypatch, no_plots):
    path, out = tiny_path(tmp_path), tmp_path / "r"
    inner_rc = []

    def fake(entry, *a, **k):
        if entry.name == "LRURec":
            # another harness finishes NARM on the same dataset while this one is training LRURec
            inner_rc.append(cli.main(argv(path, out, "NARM")))
        return fake_result()

    monkeypatch.setattr(run.runner, "run_worker", fake)
    assert cli.main(argv(path, out, "LRURec,GRU4Rec")) == 0
    assert inner_rc == [0]
    summary = json.loads((out / "quick" / "tiny" / "summary.json").read_text())
    assert set(summary["models"]) == {"LRURec", "GRU4Rec", "NARM"}
    assert len(summary["runs"]) == 2
    assert "NARM" in (out / "quick" / "tiny" / "summary.md").read_text()


def test_unsupported_regime_row_without_running(tmp_path, monkeypatch, no_plots):
    monkeypatch.setattr(run.runner, "run_worker", lambda *a, **k: pytest.fail("must not run"))
    assert cli.main(argv(tiny_path(tmp_path), tmp_path / "r", "BPR:whole_sequence")) == 1
    row = json.loads((tmp_path / "r" / "quick" / "tiny" / "summary.json").read_text())["models"]["BPR:whole_sequence"]
    assert "no whole_sequence" in row["error"]


def test_default_output_and_work_folders(tmp_path, monkeypatch, no_plots):
    seen = {}

    def fake(entry, dataset, config, data_dir, log_path, work, **k):
        seen.update(work=work, log=log_path, data_dir=data_dir)
        return fake_result()

    monkeypatch.setattr(run.runner, "run_worker", fake)
    path = tiny_path(tmp_path)
    args = ["--dataset", "tiny", "--data_path", path, "--models", "GRU4Rec"]
    assert cli.main(args) == 0  # cwd is tmp_path (conftest): the default is ./compare_results
    assert (tmp_path / "compare_results" / "tiny" / "summary.json").is_file()
    assert seen["work"] == str(tmp_path / "compare_results" / "tiny" / ".work" / "GRU4Rec")
    assert seen["data_dir"] == os.path.join(path, "tiny")
    assert cli.main(args + ["--quick", "--work_dir", str(tmp_path / "w")]) == 0
    assert seen["work"] == str(tmp_path / "w" / "tiny" / "quick" / "GRU4Rec")
    assert seen["data_dir"] == str(tmp_path / "w" / "tiny" / "quick" / "data" / "tiny")
    assert not (tmp_path / "w" / "tiny" / "quick").exists()  # the quick subset is removed afterwards
    assert seen["log"] == str(tmp_path / "compare_results" / "quick" / "tiny" / "logs" / "GRU4Rec.log")


def test_data_is_found_without_knowing_the_checkout(tmp_path):
    assert data.resolve_data_dir("tiny", None) is None  # nothing in ./dataset: RecBole's own default
    write = tiny_path(tmp_path / "dataset", "tiny")  # RecBole's default data_path, dataset/ under the cwd
    os.makedirs(tmp_path / "dataset", exist_ok=True)
    os.replace(os.path.join(write, "tiny"), tmp_path / "dataset" / "tiny")
    assert data.resolve_data_dir("tiny", None) == str(tmp_path / "dataset" / "tiny")
    assert data.resolve_data_dir("ml-100k", "/nonexistent").endswith(os.path.join("dataset_example", "ml-100k"))
    with pytest.raises(FileNotFoundError, match="pass --data_path"):
        run.compare("nothere", "GRU4Rec", quick=True, out=str(tmp_path / "r"))


def test_quick_subset_and_bad_arguments(tmp_path):
    src = tiny_path(tmp_path / "d", "x", n_users=30)
    folder, kept = data.write_user_subset(os.path.join(src, "x"), "x", str(tmp_path / "sub"), 7)
    lines = open(os.path.join(folder, "x.inter")).read().splitlines()
    assert kept == 7 and lines[0].startswith("user_id:token")
    assert len({ln.split("\t")[0] for ln in lines[1:]}) == 7
    from conftest import tiny_rows, write_inter

    rows = tiny_rows(n_users=30)[::-1]  # file order is not time order
    src = write_inter(tmp_path / "e", "y", rows)
    folder, kept = data.write_user_subset(os.path.join(src, "y"), "y", str(tmp_path / "sub2"), 5,
                                          max_per_user=3, time_field="timestamp")
    got = {}
    for ln in open(os.path.join(folder, "y.inter")).read().splitlines()[1:]:
        u, _, t = ln.split("\t")
        got.setdefault(u, []).append(int(t))
    assert kept == 5 and len(got) == 5
    for u, times in got.items():
        assert sorted(times) == sorted(t for (uu, _, t) in rows if str(uu) == u)[-3:]
    assert cli.main(["--dataset", "tiny", "--models", "LRURec", "--bogus"]) == 2


def test_time_budget_stops_at_an_epoch_boundary_and_tests_best_weights(tmp_path):
    out = tmp_path / "results"
    args = argv(tiny_path(tmp_path), out, "LRURec", "--epochs", "50", "--time_budget", "0.001", "--in_process",
                quick=False)
    assert cli.main(args) == 0
    summary = json.loads((out / "tiny" / "summary.json").read_text())
    assert summary["protocol"]["time_budget_s"] == 0.001
    row = summary["models"]["LRURec"]
    assert row["error"] is None, row["error"]
    # the first epoch always runs; the budget then stops training before the second
    assert row["stopped_by"] == "time_budget" and row["epochs_run"] == 1
    assert row["epochs_to_best"] == 1
    assert all(isinstance(row[part][k], float) for part in ("test", "best_valid") for k in METRIC_KEYS)
    assert "time budget" in (out / "tiny" / "summary.md").read_text()
    # a committed record names no folder of the machine that wrote it
    text = (out / "tiny" / "summary.json").read_text()
    assert str(tmp_path) not in text and os.getcwd() not in text and '"/' not in text


def test_a_budget_stopped_run_continues_under_a_larger_budget_as_if_never_stopped(tmp_path):
    path = tiny_path(tmp_path)
    common = ["--epochs", "3", "--stopping_step", "10", "--in_process"]
    assert cli.main(argv(path, tmp_path / "a", "LRURec", *common, "--time_budget", "0.001", quick=False)) == 0
    first = json.loads((tmp_path / "a" / "tiny" / "summary.json").read_text())["models"]["LRURec"]
    assert first["stopped_by"] == "time_budget" and first["epochs_run"] == 1
    # the same folder with no budget (a later session with more time): it continues after epoch 1
    assert cli.main(argv(path, tmp_path / "a", "LRURec", *common, quick=False)) == 0
    row = json.loads((tmp_path / "a" / "tiny" / "summary.json").read_text())["models"]["LRURec"]
    assert row["stopped_by"] == "epoch_cap" and row["epochs_run"] == 3 and row["resumed_at_epochs"] == [1]
    assert cli.main(argv(path, tmp_path / "b", "LRURec", *common, quick=False)) == 0
    straight = json.loads((tmp_path / "b" / "tiny" / "summary.json").read_text())["models"]["LRURec"]
    assert straight["resumed_at_epochs"] == []
    assert row["test"] == straight["test"] and row["best_valid"] == straight["best_valid"]


def test_a_row_optimised_differently_from_this_run_is_trained_again(tmp_path, monkeypatch, no_plots, capsys):
    calls = []
    monkeypatch.setattr(run.runner, "run_worker", lambda entry, *a, **k: calls.append(entry.name) or fake_result())
    path, out = tiny_path(tmp_path), tmp_path / "r"
    assert cli.main(argv(path, out, "SASRecWS,GRU4Rec", quick=False)) == 0
    file = out / "tiny" / "summary.json"
    summary = json.loads(file.read_text())
    # SASRecWS's row as an older harness made it, when its YAML still said adam: no record, only its config
    row = summary["models"]["SASRecWS"]
    del row["optimization"]
    row["config"] = {"learner": "adam", "learning_rate": 0.001, "weight_decay": 0.01, "clip_grad_norm": None}
    file.write_text(json.dumps(summary))
    capsys.readouterr()
    assert cli.main(argv(path, out, "SASRecWS,GRU4Rec", quick=False)) == 0
    assert calls == ["SASRecWS", "GRU4Rec", "SASRecWS"]
    assert "optimizer 'adam' -> 'adamw'" in capsys.readouterr().out
    assert json.loads(file.read_text())["models"]["SASRecWS"]["optimization"]["optimizer"] == "adamw"
