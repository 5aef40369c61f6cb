"""Reliability: bad input gives one clear error, training faults keep the good checkpoints, an
interrupted run resumes to the same result, runs are reproducible and checkpoints are atomic."""
import glob
import os
import subprocess
import sys

import pytest
import torch

from recbole_lru.cli import main
from recbole_lru.compat import load_checkpoint, save_checkpoint
from recbole_lru.quick_start import run
from recbole_lru.trainer import NonFiniteLossError, last_checkpoint_path

from conftest import REPO, build_model, tiny_rows, write_inter

torch.set_num_threads(1)

HEADER = "user_id:token\titem_id:token\ttimestamp:float"
LOAD_COL = "--load_col={'inter': ['user_id', 'item_id', 'timestamp']}"
SMALL = ["--hidden_size=16", "--n_heads=2", "--inner_size=32", "--epochs=1", "--show_progress=False",
         "--train_batch_size=64", "--eval_batch_size=64", "--MAX_ITEM_LIST_LENGTH=10", LOAD_COL]


def _cli_in_process(capsys, *args):
    """Run the command line's main() here (same code as run_recbole_lru.py, no process start)."""
    rc = main(list(args))
    err = capsys.readouterr().err
    return rc, err


def _assert_one_line_error(rc, err, *needles):
    assert rc == 2, err[-2000:]
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: ")
    for needle in needles:
        assert needle in line, line


def _checkpoints(folder):
    """Best-model checkpoints in ``folder`` (not the -last ones, not temporaries)."""
    return sorted(f for f in glob.glob(os.path.join(folder, "*.pth")) if not f.endswith("-last.pth"))


def _lasts(folder):
    return sorted(glob.glob(os.path.join(folder, "*-last.pth")))


# ============================================================================================
# 1. Bad input -> one line naming the problem and the fix, exit status 2
# ============================================================================================
def test_cli_unknown_model(capsys):
    rc, err = _cli_in_process(capsys, "--model=LRUrec", "--dataset=ml-100k")
    _assert_one_line_error(rc, err, "Unknown model 'LRUrec'", "LRURec", "Available models")


def test_cli_missing_dataset_offline(capsys, tmp_path):
    rc, err = _cli_in_process(capsys, "--model=LRURec", "--dataset=nowhere", f"--data_path={tmp_path}")
    _assert_one_line_error(rc, err, "'nowhere' was not found", "--data_path")


BAD_FILES = {
    "bad_header": ("user_id\titem_id:token\ttimestamp:float", tiny_rows(), ["header column 'user_id'", "name:type"]),
    "bad_type": ("user_id:tok\titem_id:token\ttimestamp:float", tiny_rows(), ["type 'tok'", "use one of"]),
    "no_user_column": ("uid:token\titem_id:token\ttimestamp:float", tiny_rows(), ["no column 'user_id'", "USER_ID_FIELD"]),
    "no_item_column": ("user_id:token\tiid:token\ttimestamp:float", tiny_rows(), ["no column 'item_id'", "ITEM_ID_FIELD"]),
    "no_time_column": ("user_id:token\titem_id:token", [r[:2] for r in tiny_rows()], ["no column 'timestamp'", "TIME_FIELD"]),
    "text_timestamp": (HEADER, [(u, i, "yesterday") for u, i, _ in tiny_rows()], ["line 2, column 3 (timestamp)", "not a finite number"]),
    "no_rows": (HEADER, [], ["header but no interactions"]),
    "all_single": (HEADER, [(u, u % 30 + 1, u) for u in range(1, 41)], ["training split is empty", "at least 2 interactions"]),
}


def test_cli_column_not_loaded(capsys, tmp_path):
    data_path = write_inter(tmp_path / "data", "tiny", tiny_rows())
    small = [a for a in SMALL if not a.startswith("--load_col")]
    rc, err = _cli_in_process(capsys, "--model=LRURec", "--dataset=tiny", f"--data_path={data_path}", *small,
                              "--load_col={'inter': ['user_id', 'item_id']}")
    _assert_one_line_error(rc, err, "column 'timestamp' is in the file but not loaded", "load_col")


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_cli_bad_inter_file(case, capsys, tmp_path):
    header, rows, needles = BAD_FILES[case]
    data_path = write_inter(tmp_path / "data", case, rows, header=header)
    rc, err = _cli_in_process(capsys, "--model=LRURec", f"--dataset={case}", f"--data_path={data_path}", *SMALL)
    _assert_one_line_error(rc, err, f"{case}", *needles)


BAD_CONFIGS = {
    "hidden_dropout_prob=-0.1": "hidden_dropout_prob=-0.1 must be a number in [0, 1)",
    "hidden_dropout_prob=1.0": "hidden_dropout_prob=1.0 must be a number in [0, 1)",
    "attn_dropout_prob=1.5": "attn_dropout_prob=1.5 must be a number in [0, 1)",
    "hidden_size=0": "hidden_size=0 must be an integer >= 1",
    "hidden_size=-4": "hidden_size=-4 must be an integer >= 1",
    "n_layers=0": "n_layers=0 must be an integer >= 1",
    "MAX_ITEM_LIST_LENGTH=0": "MAX_ITEM_LIST_LENGTH=0 must be an integer >= 1",
    "train_mode=bogus": "train_mode='bogus' must be one of",
    "loss_type=XE": "loss_type='XE' must be 'CE' or 'BPR'",
}


@pytest.mark.parametrize("model", ["LRURec", "LinRec"])
@pytest.mark.parametrize("setting", sorted(BAD_CONFIGS))
def test_cli_config_out_of_range(model, setting, capsys, tiny_data):
    small = [a for a in SMALL if not a.startswith(f"--{setting.split('=')[0]}=")]
    rc, err = _cli_in_process(capsys, f"--model={model}", "--dataset=tiny", f"--data_path={tiny_data['data_path']}",
                              *small, f"--{setting}")
    _assert_one_line_error(rc, err, BAD_CONFIGS[setting])
    assert f"Invalid {model} config" in err and "Fix the value" in err


@pytest.mark.slow
def test_cli_errors_from_a_real_process(tmp_path):
    """The same through ``python run_recbole_lru.py``: exit status 2, no traceback."""
    data_path = write_inter(tmp_path / "data", "broken", tiny_rows(), header="user_id:token\titem_id\ttimestamp:float")
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, os.path.join(REPO, "run_recbole_lru.py"), "--model=LRURec"]
    proc = subprocess.run([*cmd, "--dataset=broken", f"--data_path={data_path}", *SMALL],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ") and "header column 'item_id'" in proc.stderr
    # (the other errors' wording is checked in process above: the process adds only the exit path)


# --------------------------------------------------------------------------------------------
# Short and long histories
# --------------------------------------------------------------------------------------------
def _edge_rows():
    """tiny_rows plus users with 1, 2 and 3 interactions and one user with 30."""
    rows = tiny_rows()
    rows += [("s1", 5, 1)]
    rows += [("s2", 3, 1), ("s2", 4, 2)]
    rows += [("s3", 3, 1), ("s3", 4, 2), ("s3", 5, 3)]
    rows += [("long", (t % 30) + 1, t) for t in range(30)]  # items 1..30 in time order
    return rows


def _edge_splits(tmp_path, **extra):
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation

    data_path = write_inter(tmp_path / "data", "edge", _edge_rows())
    config = Config(model="LRURec", dataset="edge", config_dict={
        "data_path": data_path, "load_col": {"inter": ["user_id", "item_id", "timestamp"]}, "show_progress": False,
        **extra})
    dataset = create_dataset(config)
    return dataset, data_preparation(config, dataset)


def _rows_of(dataset, split, raw_user):
    feat = split.dataset.inter_feat
    return feat[feat["user_id"] == dataset.token2id("user_id", raw_user)]


@pytest.mark.parametrize("mode", ["prefix", "whole_sequence"])
def test_single_interaction_users_are_dropped_and_training_works(mode, tmp_path):
    dataset, (train, valid, test) = _edge_splits(tmp_path, train_mode=mode, MAX_ITEM_LIST_LENGTH=10)
    counts = {u: [len(_rows_of(dataset, s, u)) for s in (train, valid, test)] for u in ("s1", "s2", "s3")}
    # one interaction: no target, so no row anywhere; two: one training row; three: train + test
    assert counts == {"s1": [0, 0, 0], "s2": [1, 0, 0], "s3": [1, 0, 1]}
    cfg = {"data_path": str(tmp_path / "data"), "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
           "epochs": 1, "hidden_size": 16, "train_batch_size": 64, "eval_batch_size": 64, "show_progress": False,
           "MAX_ITEM_LIST_LENGTH": 10, "train_mode": mode, "checkpoint_dir": str(tmp_path / "saved")}
    result = run("LRURec", "edge", config_dict=cfg, saved=False)
    assert 0.0 <= result["test_result"]["recall@10"] <= 1.0


@pytest.mark.parametrize("mode", ["prefix", "whole_sequence"])
def test_long_sequences_keep_the_most_recent_items(mode, tmp_path):
    dataset, (train, valid, test) = _edge_splits(tmp_path, train_mode=mode, MAX_ITEM_LIST_LENGTH=5)
    for split in (train, valid, test):
        assert split.dataset.inter_feat["item_id_list"].shape[1] == 5
    tokens = lambda ids: [int(dataset.id2token("item_id", int(i))) for i in ids]  # noqa: E731
    row = _rows_of(dataset, test, "long")
    assert row["item_length"].tolist() == [5]
    assert tokens(row["item_id_list"][0]) == [25, 26, 27, 28, 29] and tokens(row["item_id"]) == [30]
    row = _rows_of(dataset, valid, "long")
    assert tokens(row["item_id_list"][0]) == [24, 25, 26, 27, 28] and tokens(row["item_id"]) == [29]
    rows = _rows_of(dataset, train, "long")
    assert (rows["item_length"] <= 5).all()
    # the last training row (target 28; in whole_sequence the last window) holds items 23..27
    k = tokens(rows["item_id"]).index(28)
    assert tokens(rows["item_id_list"][k]) == [23, 24, 25, 26, 27]
    cfg = {"data_path": str(tmp_path / "data"), "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
           "epochs": 1, "hidden_size": 16, "train_batch_size": 64, "eval_batch_size": 64, "show_progress": False,
           "MAX_ITEM_LIST_LENGTH": 5, "train_mode": mode, "checkpoint_dir": str(tmp_path / "saved")}
    result = run("LRURec", "edge", config_dict=cfg, saved=False)
    assert 0.0 <= result["test_result"]["ndcg@10"] <= 1.0


@pytest.mark.parametrize("name,extra", [("LRURec", {}), ("LinRec", {"causal": True})])
def test_step_rejects_out_of_range_item_ids(name, extra):
    torch.manual_seed(0)
    model = build_model(name, n_items=30, **extra).eval()
    state = model.init_state(2)
    for bad in ([0, 3], [3, 30], [-1, 3]):
        with pytest.raises(ValueError, match=r"item ids must be in \[1, 29\].*token2id"):
            model.step(torch.tensor(bad), state)
    with pytest.raises(TypeError, match="integer tensor"):
        model.step(torch.tensor([1.0, 2.0]), state)
    scores, _ = model.step(torch.tensor([1, 29]), state)  # the valid range still works
    assert scores.shape == (2, 30)


# ============================================================================================
# 2. Training faults
# ============================================================================================
def _run_cfg(tiny_data, tmp_path, folder, **extra):
    return {**tiny_data, "epochs": 3, "n_layers": 1, "valid_metric": "NDCG@10", "train_batch_size": 16,
            "checkpoint_dir": str(tmp_path / folder), **extra}


def _epoch_tracker(monkeypatch):
    """Records the epoch being trained (RecBole's Trainer._train_epoch runs it)."""
    from recbole.trainer.trainer import Trainer

    current = {"epoch": None}
    original = Trainer._train_epoch

    def tracked(self, train_data, epoch_idx, **kw):
        current["epoch"] = epoch_idx
        return original(self, train_data, epoch_idx, **kw)

    monkeypatch.setattr(Trainer, "_train_epoch", tracked)
    return current


@pytest.mark.parametrize("bad", ["nan", "inf"])
def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(bad, monkeypatch, capsys, tiny_data, tmp_path):
    from recbole_lru.models.lrurec import LRURec

    current = _epoch_tracker(monkeypatch)
    folder = str(tmp_path / "saved")
    snapshot = {}
    original = LRURec.calculate_loss

    def poisoned(self, interaction):
        loss = original(self, interaction)
        if current["epoch"] == 1:  # the second epoch
            if not snapshot:
                (best,) = _checkpoints(folder)
                snapshot["best"] = best
                snapshot["bytes"] = open(best, "rb").read()
            return loss * float(bad)
        return loss

    monkeypatch.setattr(LRURec, "calculate_loss", poisoned)
    cfg = _run_cfg(tiny_data, tmp_path, "saved")
    args = [f"--{k}={v}" for k, v in cfg.items() if k not in ("metrics", "topk")]
    rc, err = _cli_in_process(capsys, "--model=LRURec", "--dataset=tiny", *args)
    _assert_one_line_error(rc, err, f"Training loss is {bad}", "training stopped", snapshot["best"], "--resume=",
                           "learning_rate")
    # the best checkpoint (epoch 0) is untouched and loads through the safe loader
    assert _checkpoints(folder) == [snapshot["best"]]
    assert open(snapshot["best"], "rb").read() == snapshot["bytes"]
    state = load_checkpoint(snapshot["best"])
    assert state["epoch"] == 0 and all(torch.isfinite(v).all() for v in state["state_dict"].values())
    # the last good epoch can be resumed
    (last,) = _lasts(folder)
    assert last == last_checkpoint_path(snapshot["best"])
    assert load_checkpoint(last)["epoch"] == 0
    assert not glob.glob(os.path.join(folder, ".tmp-*"))


def test_non_finite_loss_error_type(monkeypatch, tiny_data, tmp_path):
    from recbole_lru.models.lrurec import LRURec

    monkeypatch.setattr(LRURec, "calculate_loss", lambda self, inter: torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(NonFiniteLossError, match="Training loss is nan"):
        run("LRURec", "tiny", config_dict=_run_cfg(tiny_data, tmp_path, "saved"))
    assert not _lasts(str(tmp_path / "saved"))  # nothing finished, nothing to resume


def _crash_at_epoch(monkeypatch, epoch):
    """Ctrl-C at the start of ``epoch``'s training (after the previous epoch ended)."""
    from recbole.trainer.trainer import Trainer

    original = Trainer._train_epoch

    def crashing(self, train_data, epoch_idx, **kw):
        if epoch_idx == epoch:
            raise KeyboardInterrupt
        return original(self, train_data, epoch_idx, **kw)

    monkeypatch.setattr(Trainer, "_train_epoch", crashing)


def _same_state(a, b):
    sa, sb = load_checkpoint(a)["state_dict"], load_checkpoint(b)["state_dict"]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("model,extra", [
    ("LRURec", {"train_mode": "whole_sequence"}),
    ("LRURec", {"train_mode": "prefix"}),
    ("LinRec", {"train_mode": "whole_sequence", "causal": True}),
])
def test_interrupted_run_resumes_to_identical_result(model, extra, monkeypatch, tiny_data, tmp_path):
    full = run(model, "tiny", config_dict=_run_cfg(tiny_data, tmp_path, "full", **extra))
    (full_best,) = _checkpoints(str(tmp_path / "full"))
    assert not _lasts(str(tmp_path / "full"))  # a completed run leaves only its best checkpoint

    with monkeypatch.context() as m:
        _crash_at_epoch(m, 1)
        with pytest.raises(KeyboardInterrupt) as info:
            run(model, "tiny", config_dict=_run_cfg(tiny_data, tmp_path, "crashed", **extra))
    (last,) = _lasts(str(tmp_path / "crashed"))
    assert info.value.resume_file == last
    state = load_checkpoint(last)  # safe loader: tensors, plain values, Config
    assert state["epoch"] == 0 and set(state["rng_state"]) >= {"torch", "numpy", "python", "train_loader"}

    resumed = run(model, "tiny", config_dict=_run_cfg(tiny_data, tmp_path, "elsewhere", **extra), resume=last)
    assert resumed["test_result"] == full["test_result"]
    assert resumed["best_valid_result"] == full["best_valid_result"]
    assert resumed["best_valid_score"] == full["best_valid_score"]
    # the best model keeps being written next to the last checkpoint, and is bit-identical
    (resumed_best,) = _checkpoints(str(tmp_path / "crashed"))
    assert not os.path.exists(tmp_path / "elsewhere") or not _checkpoints(str(tmp_path / "elsewhere"))
    assert load_checkpoint(resumed_best)["epoch"] == load_checkpoint(full_best)["epoch"]
    assert _same_state(resumed_best, full_best)
    assert not _lasts(str(tmp_path / "crashed"))


def test_cli_interrupt_then_resume(monkeypatch, capsys, tiny_data, tmp_path):
    cfg = _run_cfg(tiny_data, tmp_path, "saved", epochs=2)
    args = ["--model=LRURec", "--dataset=tiny"] + [f"--{k}={v}" for k, v in cfg.items() if k not in ("metrics", "topk")]
    with monkeypatch.context() as m:
        _crash_at_epoch(m, 1)
        rc, err = _cli_in_process(capsys, *args)
    (last,) = _lasts(str(tmp_path / "saved"))
    assert rc == 130 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == f"interrupted. Continue it with --resume={last}"
    assert main([*args, f"--resume={last}"]) == 0
    assert "recall@10" in capsys.readouterr().out
    assert not _lasts(str(tmp_path / "saved"))


def test_resume_rejects_wrong_checkpoints(capsys, tiny_data, tmp_path):
    run("LRURec", "tiny", config_dict=_run_cfg(tiny_data, tmp_path, "saved", epochs=1))
    (best,) = _checkpoints(str(tmp_path / "saved"))
    base = ["--dataset=tiny"] + [f"--{k}={v}" for k, v in _run_cfg(tiny_data, tmp_path, "other").items()
                                 if k not in ("metrics", "topk", "hidden_size")]
    rc, err = _cli_in_process(capsys, "--model=LinRec", *base, f"--resume={best}")
    _assert_one_line_error(rc, err, "is a LRURec checkpoint", "--model=LRURec")
    rc, err = _cli_in_process(capsys, "--model=LRURec", *base, "--hidden_size=32", f"--resume={best}")
    _assert_one_line_error(rc, err, "does not fit the model", "the config the run was started with")
    rc, err = _cli_in_process(capsys, "--model=LRURec", *base, "--hidden_size=16", "--hidden_size=32")
    _assert_one_line_error(rc, err, "--hidden_size is given twice")
    rc, err = _cli_in_process(capsys, "--model=LRURec", *base, "--hidden_size=16", f"--resume={best}")
    assert rc == 0  # the right model and config resume
    rc, err = _cli_in_process(capsys, "--model=LRURec", *base, f"--resume={tmp_path / 'absent.pth'}")
    _assert_one_line_error(rc, err, "Checkpoint file not found")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.pth")
    rc, err = _cli_in_process(capsys, "--model=LRURec", *base, f"--resume={tmp_path / 'plain.pth'}")
    _assert_one_line_error(rc, err, "not a RecBole training checkpoint")
    torch.save({"config": _Payload(), "state_dict": {}}, tmp_path / "evil.pth")
    rc, err = _cli_in_process(capsys, "--model=LRURec", *base, f"--resume={tmp_path / 'evil.pth'}")
    _assert_one_line_error(rc, err, "Refusing to load")
    assert not os.path.exists("pwned")


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_resume_from_best_checkpoint_still_works(tiny_data, tmp_path):
    """A best-model checkpoint (RecBole's kind) resumes as RecBole does: from its epoch on."""
    run("LRURec", "tiny", config_dict=_run_cfg(tiny_data, tmp_path, "saved", epochs=1))
    (best,) = _checkpoints(str(tmp_path / "saved"))
    result = run("LRURec", "tiny", config_dict=_run_cfg(tiny_data, tmp_path, "saved", epochs=2), resume=best)
    assert 0.0 <= result["test_result"]["ndcg@10"] <= 1.0
    assert load_checkpoint(best)["epoch"] in (0, 1)


# ============================================================================================
# 3. Reproducibility
# ============================================================================================
@pytest.mark.parametrize("model,extra", [
    ("LRURec", {"train_mode": "prefix"}),
    ("LRURec", {"train_mode": "whole_sequence"}),
    ("LinRec", {"train_mode": "prefix"}),
    ("LinRec", {"train_mode": "whole_sequence", "causal": True}),
])
def test_same_seed_same_metrics(model, extra, tiny_data, tmp_path):
    cfg = {**tiny_data, "epochs": 2, "n_layers": 1, "valid_metric": "NDCG@10", **extra}
    a = run(model, "tiny", config_dict=cfg, saved=False)
    b = run(model, "tiny", config_dict=cfg, saved=False)
    assert a["test_result"] == b["test_result"] and a["best_valid_result"] == b["best_valid_result"]


# ============================================================================================
# 4. Atomic checkpoints
# ============================================================================================
def _crashing_save(monkeypatch):
    real_save = torch.save

    def partial_then_crash(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", partial_then_crash)
    return real_save


def test_crash_mid_save_keeps_previous_checkpoint(monkeypatch, tmp_path):
    path = tmp_path / "ckpt" / "model.pth"
    save_checkpoint({"epoch": 0, "state_dict": {"w": torch.ones(3)}}, path)
    before = path.read_bytes()
    _crashing_save(monkeypatch)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint({"epoch": 1, "state_dict": {"w": torch.zeros(3)}}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == ["model.pth"]  # no temporary file left behind
    assert torch.equal(load_checkpoint(path)["state_dict"]["w"], torch.ones(3))


def test_trainer_checkpoints_are_atomic_and_safe(monkeypatch, tiny_data, tmp_path):
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer

    config = Config(model="LRURec", dataset="tiny", config_dict=_run_cfg(tiny_data, tmp_path, "saved"))
    train, valid, test = data_preparation(config, create_dataset(config))
    net = get_model("LRURec")(config, train._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], "LRURec")(config, net)
    trainer._train_data = train
    trainer._save_checkpoint(0, verbose=False)  # RecBole's best-model save, through the atomic writer
    trainer._save_last_checkpoint(0)
    best, last = trainer.saved_model_file, trainer.last_checkpoint_file
    saved = {p: open(p, "rb").read() for p in (best, last)}
    for p in (best, last):
        assert load_checkpoint(p)["epoch"] == 0  # both pass the safe loader

    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    _crashing_save(monkeypatch)
    with pytest.raises(OSError):
        trainer._save_checkpoint(1, verbose=False)
    with pytest.raises(OSError):
        trainer._save_last_checkpoint(1)
    monkeypatch.undo()
    for p, content in saved.items():
        assert open(p, "rb").read() == content
    assert sorted(os.listdir(tmp_path / "saved")) == sorted(os.path.basename(p) for p in saved)


# ============================================================================================
# 5. Property-based tests of the ops live in tests/ops (not repeated here)
# ============================================================================================
def test_property_tests_of_the_ops_exist():
    for name in ("test_scan.py", "test_linear_attention.py"):
        text = open(os.path.join(REPO, "tests", "ops", name)).read()
        assert "@given(" in text and "from hypothesis" in text, name
