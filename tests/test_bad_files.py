"""Every kind of bad checkpoint, config file or data row gets one line (exit 2) from the command
line; plus the other faults a new user meets (NaN first epoch, stale temporary files, the
load_col form, BPR without negatives, --max_evals with exhaustive search, old checkpoints)."""
import os
import subprocess
import sys
import time
import zipfile

import pytest
import torch

from recbole_lru.checkpoint import CheckpointError, load_checkpoint
from recbole_lru.cli import main
from recbole_lru.compat import clean_stale_temp_files, save_checkpoint
from recbole_lru.quick_start import parse_overrides

from conftest import REPO, tiny_rows, write_inter

torch.set_num_threads(1)
SMALL = ["--hidden_size=16", "--n_heads=2", "--inner_size=32", "--epochs=1", "--show_progress=False", "--n_layers=1",
         "--train_batch_size=64", "--eval_batch_size=64", "--MAX_ITEM_LIST_LENGTH=10"]


def _one_line(capsys, argv, *needles):
    rc = main(list(argv))
    err = capsys.readouterr().err
    assert rc == 2, err[-1500:]
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: ")
    for needle in needles:
        assert needle in line, line
    return line


@pytest.fixture
def base(tmp_path):
    data_path = write_inter(tmp_path / "data", "tiny", tiny_rows())
    return ["--model=LRURec", "--dataset=tiny", f"--data_path={data_path}", f"--checkpoint_dir={tmp_path / 'saved'}",
            "--load_col={inter: [user_id, item_id, timestamp]}", *SMALL]


@pytest.fixture(scope="module")
def best(tmp_path_factory):
    """A real best checkpoint of the SMALL LRURec on tiny data."""
    from recbole_lru.quick_start import run

    root = tmp_path_factory.mktemp("best")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        data_path = write_inter(root / "data", "tiny", tiny_rows())
        cfg = parse_overrides(SMALL + ["--load_col={inter: [user_id, item_id, timestamp]}"])
        run("LRURec", "tiny", config_dict={**cfg, "data_path": data_path, "checkpoint_dir": str(root / "saved")})
    finally:
        os.chdir(cwd)
    (name,) = os.listdir(root / "saved")
    return str(root / "saved" / name)


def _bad_checkpoint(kind, tmp_path, best):
    path = tmp_path / f"{kind}.pth"
    if kind == "random_bytes":
        path.write_bytes(bytes(range(256)) * 4)
    elif kind == "text":
        path.write_text("epochs: 10\nthis is not a checkpoint\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(open(best, "rb").read()[:2000])
    elif kind == "folder":
        path.mkdir()
    elif kind == "zip_not_torch":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("readme.txt", "hello")
    elif kind == "plain_dict_config":
        state = load_checkpoint(best)
        state["config"] = dict(state["config"].final_config_dict)
        torch.save(state, path)
    elif kind == "no_keys":
        torch.save({"weights": torch.zeros(2)}, path)
    elif kind == "list":
        torch.save([1, 2, 3], path)
    elif kind == "legacy":
        torch.save({"a": 1}, path, _use_new_zipfile_serialization=False)
    return str(path)


BAD_CHECKPOINTS = {
    "missing": "Checkpoint file not found",
    "random_bytes": "is not a torch checkpoint",
    "text": "is a text file, not a torch checkpoint",
    "empty": "is empty (0 bytes)",
    "truncated": "truncated or damaged",
    "folder": "is a folder, not a checkpoint",
    "zip_not_torch": "zip archive but not a torch checkpoint",
    "plain_dict_config": "not RecBole's Config",
    "no_keys": "not a RecBole training checkpoint",
    "list": "not a RecBole training checkpoint",
    "legacy": "legacy (pre-1.6) format",
}


@pytest.mark.parametrize("kind", sorted(BAD_CHECKPOINTS))
def test_bad_checkpoint_given_to_resume(kind, best, base, capsys, tmp_path):
    path = str(tmp_path / "absent.pth") if kind == "missing" else _bad_checkpoint(kind, tmp_path, best)
    line = _one_line(capsys, [*base, f"--resume={path}"], BAD_CHECKPOINTS[kind])
    assert "arbitrary code" not in line  # only a file that asks for a foreign global is called that


def test_wrong_model_and_wrong_shapes(best, base, capsys):
    other = [a for a in base if not a.startswith("--model=")]
    _one_line(capsys, [*other, "--model=LinRec", f"--resume={best}"], "is a LRURec checkpoint", "--model=LRURec")
    wider = [a for a in base if not a.startswith("--hidden_size=")]
    _one_line(capsys, [*wider, "--hidden_size=32", f"--resume={best}"], "does not fit the model", "size mismatch")


def test_protocol_4_recbole_checkpoint_loads(best, tmp_path):
    """RecBole without the plugin saves with pickle protocol 4: readable directly, no conversion."""
    state = load_checkpoint(best)
    torch.save(state, tmp_path / "p4.pth", pickle_protocol=4)
    again = load_checkpoint(tmp_path / "p4.pth")
    assert again["config"]["model"] == "LRURec" and again.keys() == state.keys()
    assert all(torch.equal(again["state_dict"][k], v) for k, v in state["state_dict"].items())


CONFIG_FILES = {
    "bad_yaml": ("epochs: [1, 2\nhidden_size: 16\n", "not valid YAML at line"),
    "list": ("- epochs\n- 3\n", "a YAML list, not a mapping"),
    "scalar": ("just words\n", "a YAML str, not a mapping"),
    "empty": ("", "is empty"),
}


@pytest.mark.parametrize("kind", sorted(CONFIG_FILES) + ["missing", "folder"])
def test_bad_config_file(kind, base, capsys, tmp_path):
    path = tmp_path / f"{kind}.yaml"
    if kind in CONFIG_FILES:
        path.write_text(CONFIG_FILES[kind][0])
    elif kind == "folder":
        path.mkdir()
    needle = CONFIG_FILES[kind][1] if kind in CONFIG_FILES else {"missing": "is not found", "folder": "is a folder"}[kind]
    _one_line(capsys, [*base, f"--config_files={path}"], f"config file {path}", needle)


# --------------------------------------------------------------------------------------------
# Data rows
# --------------------------------------------------------------------------------------------
def _rows_with(bad_line):
    rows = ["\t".join(map(str, r)) for r in tiny_rows()]
    rows.insert(4, bad_line)  # file line 6 (header is line 1)
    return rows


BAD_ROWS = {
    "nan_time": ("3\t4\tnan", "line 6, column 3 (timestamp): the time is 'nan'"),
    "inf_time": ("3\t4\tinf", "line 6, column 3 (timestamp): the time is 'inf'"),
    "empty_time": ("3\t4\t", "line 6, column 3 (timestamp): the time is empty"),
    "missing_field": ("3\t4", "line 6: 2 values where the header has 3 columns; column 3 (timestamp) is missing"),
    "extra_field": ("3\t4\t5\t6", "line 6: 4 values where the header has 3 columns; column 4 is extra"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_bad_rows_name_file_line_and_column(case, capsys, tmp_path):
    bad, needle = BAD_ROWS[case]
    folder = tmp_path / "data" / "rows"
    folder.mkdir(parents=True)
    (folder / "rows.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n" + "\n".join(_rows_with(bad)) + "\n")
    argv = ["--model=LRURec", "--dataset=rows", f"--data_path={tmp_path / 'data'}", *SMALL,
            "--load_col={inter: [user_id, item_id, timestamp]}"]
    _one_line(capsys, argv, f"{folder / 'rows.inter'}, {needle}")


def test_load_col_in_the_form_the_error_suggests(capsys, tmp_path):
    """--load_col={inter: [...]} (YAML) works on the command line, and the no-timestamp advice holds."""
    assert parse_overrides(["--load_col={inter: [user_id, item_id, seq_pos]}"]) == \
        {"load_col": {"inter": ["user_id", "item_id", "seq_pos"]}}
    assert parse_overrides(["--x=[a, b]", "--y={a: 1}", "--z=abc", "--w={not yaml: [}"]) == \
        {"x": ["a", "b"], "y": {"a": 1}, "z": "abc", "w": "{not yaml: [}"}
    rows = [(u, i, t) for u, i, t in tiny_rows()]
    write_inter(tmp_path / "data", "pos", rows, header="user_id:token\titem_id:token\tseq_pos:float")
    argv = ["--model=LRURec", "--dataset=pos", f"--data_path={tmp_path / 'data'}", *SMALL,
            f"--checkpoint_dir={tmp_path / 'saved'}"]
    line = _one_line(capsys, argv, "no column 'timestamp'", "TIME_FIELD")
    assert main([*argv, "--TIME_FIELD=seq_pos", "--load_col={inter: [user_id, item_id, seq_pos]}"]) == 0, line


# --------------------------------------------------------------------------------------------
# Training faults
# --------------------------------------------------------------------------------------------
def test_nan_in_the_first_epoch_says_no_checkpoint_exists(monkeypatch, base, capsys):
    from recbole_lru.models.lrurec import LRURec

    monkeypatch.setattr(LRURec, "calculate_loss", lambda self, inter: torch.tensor(float("nan"), requires_grad=True))
    line = _one_line(capsys, base, "Training loss is nan", "No checkpoint was written")
    assert "kept at" not in line and "--resume" not in line


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temp_files_of_killed_writers_are_removed(tmp_path):
    dead, alive = _dead_pid(), os.getppid()
    names = {f".tmp-recbole-lru-{dead}-abc-model.pth": False, f".tmp-recbole-lru-{alive}-abc-model.pth": True,
             ".tmp-k3j2h1g0model.pth": True, ".tmp-a1b2c3d4old.pth": False, "keep.pth": True}
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    old = time.time() - 2 * 3600
    os.utime(tmp_path / ".tmp-a1b2c3d4old.pth", (old, old))
    save_checkpoint({"epoch": 1}, tmp_path / "model.pth")  # the first save in a folder cleans it
    left = set(os.listdir(tmp_path))
    assert left == {n for n, kept in names.items() if kept} | {"model.pth"}
    assert clean_stale_temp_files(tmp_path) == []


@pytest.mark.slow
def test_sigkill_during_a_save_then_the_next_save_cleans_up(tmp_path):
    code = ("import time, recbole_lru.compat as c\n"
            f"c.atomic_write({str(tmp_path / 'model.pth')!r}, lambda fh: (fh.write(b'half'), fh.flush(), "
            "print('writing', flush=True), time.sleep(60)))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": REPO})
    assert proc.stdout.readline().strip() == "writing"
    proc.kill()
    proc.wait()
    (tmp,) = os.listdir(tmp_path)
    assert tmp.startswith(".tmp-recbole-lru-")
    save_checkpoint({"epoch": 1}, tmp_path / "model.pth")
    assert os.listdir(tmp_path) == ["model.pth"]


@pytest.mark.parametrize("model", ["LRURec", "LinRec"])
def test_bpr_without_negatives_is_one_line_and_with_them_trains(model, base, capsys):
    argv = [a if not a.startswith("--model=") else f"--model={model}" for a in base] + ["--loss_type=BPR",
                                                                                      "--train_mode=prefix"]
    _one_line(capsys, argv, "loss_type='BPR' with train_mode='prefix' needs one sampled negative",
              "train_neg_sample_args")
    assert main([*argv, "--train_neg_sample_args={distribution: uniform, sample_num: 1}"]) == 0
    whole = [a for a in argv if a != "--train_mode=prefix"] + ["--train_mode=whole_sequence", "--causal=True"]
    assert main(whole) == 0


def test_max_evals_caps_an_exhaustive_search(tmp_path):
    from recbole_lru.quick_start import run_hyper

    params = tmp_path / "grid.hyper"
    params.write_text("hidden_dropout_prob choice [0.1,0.2]\nlearning_rate choice [0.001,0.01]\n")
    data_path = write_inter(tmp_path / "data", "tiny", tiny_rows())
    cfg = {**parse_overrides(SMALL + ["--load_col={inter: [user_id, item_id, timestamp]}"]), "data_path": data_path,
           "checkpoint_dir": str(tmp_path / "saved")}
    out = run_hyper("LRURec", "tiny", str(params), config_dict=cfg, algo="exhaustive", max_evals=1,
                    output_file=str(tmp_path / "trials.jsonl"))
    assert len(open(out["output_file"]).read().splitlines()) == 1
    with pytest.raises(ValueError, match="max_evals=0 must be a positive integer"):
        run_hyper("LRURec", "tiny", str(params), config_dict=cfg, max_evals=0)


@pytest.mark.slow
def test_fresh_process_loads_and_evaluates(best, tmp_path):
    """Only import, load and evaluate (no Config is ever constructed, so RecBole's own numpy
    aliases are never set): NDCG reads np.float, which must come from import recbole_lru."""
    data_path = os.path.join(os.path.dirname(os.path.dirname(best)), "data")
    # RecBole's one-argument name takes data_path from RecBole's default (dataset/), never the file
    os.symlink(data_path, tmp_path / "dataset")
    code = f"""
import numpy as np, recbole_lru
from recbole.quick_start import load_data_and_model as recbole_name
from recbole.utils import get_trainer
from recbole_lru.quick_start import load_data_and_model
for load in (lambda f: load_data_and_model(f, {{"data_path": {data_path!r}}}), recbole_name):
    config, model, dataset, train, valid, test = load({best!r})
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    print(trainer.evaluate(test, load_best_model=True, model_file={best!r})["ndcg@10"])
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = (float(x) for x in proc.stdout.split()[-2:])
    assert 0.0 <= a <= 1.0 and a == b


# RecBole's own sequential-model test configurations (tests/model/test_model_auto.py), on ours
RECBOLE_VARIANTS = {
    "bpr": {"loss_type": "BPR"},
    "bpr_relu": {"loss_type": "BPR", "hidden_act": "relu"},
    "bpr_sigmoid": {"loss_type": "BPR", "hidden_act": "sigmoid"},
    "bpr_tanh_len3": {"loss_type": "BPR", "hidden_act": "tanh", "MAX_ITEM_LIST_LENGTH": 3},
    "swish": {"hidden_act": "swish"},
    "len3": {"MAX_ITEM_LIST_LENGTH": 3},
    "not_reproducible": {"reproducibility": False},
}


@pytest.mark.parametrize("variant", sorted(RECBOLE_VARIANTS))
@pytest.mark.parametrize("model", ["LRURec", "LinRec"])
def test_recbole_sequential_test_variants_train_or_say_why(model, variant, base, capsys):
    settings = RECBOLE_VARIANTS[variant]
    keep = [a for a in base if not a.startswith(("--model=", "--MAX_ITEM_LIST_LENGTH="))]
    argv = [*keep, f"--model={model}", "--train_mode=prefix", *(f"--{k}={v}" for k, v in settings.items())]
    if "MAX_ITEM_LIST_LENGTH" not in settings:
        argv.append("--MAX_ITEM_LIST_LENGTH=10")
    if settings.get("loss_type") == "BPR":  # the model YAMLs switch negative sampling off (for CE)
        _one_line(capsys, argv, f"Invalid {model} config", "train_neg_sample_args")
        argv.append("--train_neg_sample_args={distribution: uniform, sample_num: 1}")
    assert main(argv) == 0, capsys.readouterr().err[-1500:]


def test_recbole_model_checkpoints_load_resume_and_evaluate(tmp_path):
    """A RecBole model's checkpoint, written by RecBole's trainer (through the plugin's writer) and
    by RecBole without the plugin (protocol 4), loads, resumes and evaluates through RecBole's Trainer."""
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer

    data_path = write_inter(tmp_path / "data", "tiny", tiny_rows())
    cfg = {**parse_overrides(SMALL + ["--load_col={inter: [user_id, item_id, timestamp]}"]), "data_path": data_path,
           "checkpoint_dir": str(tmp_path / "saved"), "train_neg_sample_args": None}
    config = Config(model="SASRec", dataset="tiny", config_dict=cfg)
    train, valid, test = data_preparation(config, create_dataset(config))
    trainer = get_trainer(config["MODEL_TYPE"], "SASRec")(config, get_model("SASRec")(config, train._dataset))
    trainer._save_checkpoint(0, verbose=False)
    state = load_checkpoint(trainer.saved_model_file)
    assert type(state["config"]).__name__ == "Config" and state["config"].model_class is get_model("SASRec")
    torch.save(state, tmp_path / "p4.pth", pickle_protocol=4)
    for path in (trainer.saved_model_file, str(tmp_path / "p4.pth")):
        trainer.resume_checkpoint(path)
        assert trainer.start_epoch == 1
        assert 0.0 <= trainer.evaluate(test, load_best_model=True, model_file=path)["ndcg@10"] <= 1.0


def test_convert_a_trusted_legacy_checkpoint(tmp_path):
    from recbole_lru.compat import convert_checkpoint

    torch.save({"epoch": 3, "w": torch.ones(2)}, tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="legacy"):
        load_checkpoint(tmp_path / "old.pth")
    convert_checkpoint(tmp_path / "old.pth", tmp_path / "new.pth")
    assert load_checkpoint(tmp_path / "new.pth")["epoch"] == 3
