"""Like-for-like optimisation: each row's record, the refusal of a shared weight decay that the rows'
optimizers apply differently, and --optimizer."""
import json

import pytest

from compare_helpers import argv, fake_result, tiny_path
from recbole_lru.compare import cli, entries, optim, run


@pytest.mark.parametrize("learner,wd,mode", [
    ("adamw", 0.01, "decoupled"), ("AdamW", 0.01, "decoupled"), ("adam", 0.01, "L2"), ("sgd", 1e-4, "L2"),
    ("rmsprop", 0.1, "L2"), ("adagrad", 0.1, "L2"), ("sparse_adam", 0.01, "none"), ("adamw", 0.0, "none"),
    ("adam", None, "none"),
])
def test_decay_mode(learner, wd, mode):
    assert optim.decay_mode(learner, wd) == mode


def _resolve(models, shared, configs=()):
    es = entries.parse_models(models)
    entries.apply_model_configs(es, configs)
    return es, optim.resolve_optimization(es, "ml-100k", dict(shared, train_neg_sample_args=None))


def test_each_row_records_its_yaml_optimisation():
    _, rec = _resolve("LRURec,SASRecWS,SASRec", {})
    for name in ("LRURec", "SASRecWS"):  # the LRURec paper's optimisation, from the plugin's YAMLs
        assert rec[name] == {"optimizer": "adamw", "learning_rate": 0.001, "weight_decay": 0.01, "decay": "decoupled",
                             "decay_params": optim.DECAY_WEIGHTS_ONLY, "clip_grad_norm": {"max_norm": 5.0}}
    assert rec["SASRec"] == {"optimizer": "adam", "learning_rate": 0.001, "weight_decay": 0.0, "decay": "none",
                             "decay_params": None, "clip_grad_norm": None}


def test_shared_weight_decay_under_different_optimizers_is_refused():
    shared = {"weight_decay": 0.01}
    es, rec = _resolve("LRURec,SASRec,GRU4Rec", shared)
    with pytest.raises(ValueError) as err:
        optim.check_like_for_like(es, rec, shared)
    msg = str(err.value)
    assert "L2 (adam): SASRec, GRU4Rec" in msg and "decoupled (adamw): LRURec" in msg
    assert "--optimizer adamw" in msg and "--model_config SASRec:learner=adamw" in msg
    # the same value under one optimizer for all, or with every row's learner named, is what was asked
    es, rec = _resolve("LRURec,SASRec", dict(shared, learner="adamw"))
    assert {r["decay"] for r in rec.values()} == {"decoupled"}
    optim.check_like_for_like(es, rec, dict(shared, learner="adamw"))
    es, rec = _resolve("LRURec,SASRec", shared, ["LRURec:learner=adamw", "SASRec:learner=adam"])
    optim.check_like_for_like(es, rec, shared)
    assert rec["SASRec"]["decay"] == "L2" and rec["SASRec"]["decay_params"] == optim.DECAY_ALL
    # one row naming its learner is not enough while another still differs by default
    es, rec = _resolve("LRURec,SASRec", shared, ["LRURec:learner=adamw"])
    with pytest.raises(ValueError, match="SASRec"):
        optim.check_like_for_like(es, rec, shared)
    # rows that agree need nothing
    es, rec = _resolve("LRURec,SASRecWS", shared)
    optim.check_like_for_like(es, rec, shared)


def test_unknown_learner_is_refused_instead_of_silent_adam():
    with pytest.raises(ValueError, match="learner 'adamx' is not one of"):
        _resolve("SASRec", {"learner": "adamx"})


def test_cli_refuses_before_writing_anything(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(run.runner, "run_worker", lambda *a, **k: pytest.fail("must not train"))
    data = tiny_path(tmp_path)
    out = tmp_path / "r"
    assert cli.main(argv(data, out, "LRURec,SASRec", "--weight_decay=0.01")) == 2
    assert "means different things for different rows" in capsys.readouterr().err
    assert not out.exists()


def test_optimizer_option_sets_every_learner_and_is_recorded(tmp_path, monkeypatch):
    monkeypatch.setattr(run.runner, "run_worker", lambda *a, **k: fake_result())
    data, out = tiny_path(tmp_path), tmp_path / "r"
    assert cli.main(argv(data, out, "LRURec,SASRec", "--optimizer", "adamw", "--weight_decay=0.01")) == 0
    summary = json.loads((out / "quick" / "tiny" / "summary.json").read_text())
    assert summary["protocol"]["optimizer"] == "adamw"
    rows = summary["models"]
    # the worker here is a stand-in, so each row holds the record resolved before training
    assert rows["SASRec"]["optimization"]["optimizer"] == "adamw"
    assert rows["SASRec"]["optimization"]["decay"] == "decoupled"
    assert rows["SASRec"]["optimization"]["decay_params"] == optim.DECAY_ALL
    assert rows["LRURec"]["optimization"]["decay_params"] == optim.DECAY_WEIGHTS_ONLY
    md = (out / "quick" / "tiny" / "summary.md").read_text()
    assert "every model optimised with adamw" in md
    assert "| adamw | 0.001 | 0.01 decoupled, weights only | 5 |" in md
    assert "| adamw | 0.001 | 0.01 decoupled | – |" in md
    with pytest.raises(ValueError, match="disagree"):
        run.compare("tiny", "SASRec", data_path=data, out=str(out), optimizer="adamw", overrides={"learner": "sgd"})


def test_a_config_recbole_refuses_is_that_rows_error_before_anything_trains(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(run.runner, "run_worker", lambda entry, *a, **k: ran.append(entry.name) or fake_result())
    out = tmp_path / "r"
    bad = "SASRec:train_neg_sample_args={'distribution':'uniform','sample_num':1}"  # CE loss takes no negatives
    assert cli.main(argv(tiny_path(tmp_path), out, "SASRec,GRU4Rec", "--model_config", bad)) == 1
    assert ran == ["GRU4Rec"]
    rows = json.loads((out / "quick" / "tiny" / "summary.json").read_text())["models"]
    assert "should be None when the loss_type is CE" in rows["SASRec"]["error"]
    assert rows["SASRec"]["optimization"] is None and rows["GRU4Rec"]["optimization"]["optimizer"] == "adam"
