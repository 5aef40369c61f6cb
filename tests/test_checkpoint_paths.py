"""Crafted checkpoints through every public load path, and stored paths treated as data.

One short training run (module fixture) gives a real best checkpoint and a real ``-last`` one;
the attacks are those files with a hostile object added or a stored path pointed elsewhere, so a
loader that checked only the outer structure would accept them (real weights inside).
"""
import collections
import os
import pickle

import pytest
import torch
import yaml

from recbole_lru.checkpoint import CheckpointError, load_checkpoint
from recbole_lru.cli import main
from recbole_lru.compat import save_checkpoint
from recbole_lru.quick_start import load_data_and_model, run

from conftest import tiny_rows, write_inter

torch.set_num_threads(1)
MARK = "MARKER_FILE"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """{best, last, data_path, cfg}: a run of LRURec on tiny data interrupted after epoch 0."""
    from recbole.trainer.trainer import Trainer

    root = tmp_path_factory.mktemp("trained")
    cwd = os.getcwd()
    os.chdir(root)
    data_path = write_inter(root / "data", "tiny", tiny_rows())
    cfg = {"data_path": data_path, "load_col": {"inter": ["user_id", "item_id", "timestamp"]}, "epochs": 2,
           "train_batch_size": 64, "eval_batch_size": 64, "show_progress": False, "hidden_size": 16,
           "n_layers": 1, "MAX_ITEM_LIST_LENGTH": 10, "checkpoint_dir": str(root / "saved"),
           "metrics": ["Recall", "NDCG"], "topk": [10], "valid_metric": "NDCG@10", "seed": 2024}
    original = Trainer._train_epoch

    def crash_at_1(self, train_data, epoch_idx, **kw):
        if epoch_idx == 1:
            raise KeyboardInterrupt
        return original(self, train_data, epoch_idx, **kw)

    Trainer._train_epoch = crash_at_1
    try:
        with pytest.raises(KeyboardInterrupt):
            run("LRURec", "tiny", config_dict=cfg)
    finally:
        Trainer._train_epoch = original
        os.chdir(cwd)
    names = sorted(os.listdir(root / "saved"))
    last = [n for n in names if n.endswith("-last.pth")]
    best = [n for n in names if not n.endswith("-last.pth")]
    assert len(last) == 1 and len(best) == 1, names
    return {"best": str(root / "saved" / best[0]), "last": str(root / "saved" / last[0]), "data_path": data_path,
            "cfg": cfg}


class Gadget:
    """Pickles as a call of a real allow-listed name with hostile arguments."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _gadgets(marker):
    from recbole.config.configurator import Config
    from recbole.utils.enum_type import ModelType

    from recbole_lru.models.lrurec import LRURec

    code = f"__import__('os').system('touch {marker}')"
    return {
        "os_system": Gadget(os.system, f"touch {marker}"),
        "config_init": Gadget(Config, "LRURec", "tiny", None, {"epochs": code}),
        "model_class": Gadget(LRURec, code, code),
        "yaml_loader": Gadget(yaml.FullLoader, f"!!python/object/apply:os.system ['touch {marker}']"),
        "enum": Gadget(ModelType, code),
        "ordered_dict": Gadget(collections.OrderedDict, {code: code}),
        "device": Gadget(torch.device, code),
    }


def _crafted(src, dst, gadget):
    """``src`` with one more key holding the gadget, written by torch.save as an attacker would."""
    state = load_checkpoint(src)
    state["extra"] = gadget
    torch.save(state, dst)
    return str(dst)


def _loaders(trained, tmp_path):
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer

    cfg = {**trained["cfg"], "checkpoint_dir": str(tmp_path / "run")}
    args = ["--model=LRURec", "--dataset=tiny"] + [f"--{k}={v}" for k, v in cfg.items() if k not in ("metrics", "topk")]
    config = Config(model="LRURec", dataset="tiny", config_dict=cfg)
    train, valid, test = data_preparation(config, create_dataset(config))
    trainer = get_trainer(config["MODEL_TYPE"], "LRURec")(config, get_model("LRURec")(config, train._dataset))

    def recbole_load(f):
        from recbole.quick_start import load_data_and_model as recbole_name

        return recbole_name(f)

    return {
        "load_checkpoint": load_checkpoint,
        "load_data_and_model": lambda f: load_data_and_model(f, {"data_path": trained["data_path"]}),
        "recbole.quick_start.load_data_and_model": recbole_load,
        "resume_checkpoint": trainer.resume_checkpoint,
        "evaluate(model_file)": lambda f: trainer.evaluate(test, load_best_model=True, model_file=f),
        "run(resume)": lambda f: run("LRURec", "tiny", config_dict=cfg, resume=f),
        "cli --resume": lambda f: main([*args, f"--resume={f}"]),
    }


@pytest.mark.parametrize("source", ["best", "last"])
def test_every_gadget_through_every_load_path(source, trained, tmp_path, capsys):
    marker = tmp_path / MARK
    gadgets = _gadgets(marker)
    loaders = _loaders(trained, tmp_path)
    for gname, gadget in gadgets.items():
        path = _crafted(trained[source], tmp_path / f"{gname}.pth", gadget)
        for lname, load in loaders.items():
            if lname == "cli --resume":
                assert load(path) == 2, (gname, lname)
                line = capsys.readouterr().err.strip().splitlines()[-1]
                assert line.startswith("error: ") and "Nothing in it was run" in line, (gname, line)
            else:
                with pytest.raises(CheckpointError, match="Nothing in it was run"):
                    load(path)
            assert not marker.exists(), (gname, lname)
    assert not os.path.exists(tmp_path / "run") or not os.listdir(tmp_path / "run")


def test_gadgets_are_live(tmp_path):
    """The os.system and Config gadgets act when unpickled for real (so the checks above can fail)."""
    marker = tmp_path / MARK
    gadgets = _gadgets(marker)
    pickle.loads(pickle.dumps(gadgets["os_system"]))
    assert marker.exists()
    marker.unlink()
    pickle.loads(pickle.dumps(gadgets["config_init"]))  # RecBole's Config evaluates the config-dict string
    assert marker.exists()


# --------------------------------------------------------------------------------------------
# Stored paths are data
# --------------------------------------------------------------------------------------------
def _snapshot(folder):
    """Every file under ``folder`` with its bytes."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            out[os.path.relpath(path, folder)] = open(path, "rb").read()
    return out


def test_resume_never_writes_or_deletes_where_the_file_says(trained, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.pth").write_bytes(b"precious")
    (outside / "victim-last.pth").write_bytes(b"also precious")
    before = _snapshot(outside)
    folder = tmp_path / "resumed"
    folder.mkdir()
    state = load_checkpoint(trained["last"])
    state["best_model_file"] = str(outside / "victim.pth")
    last = folder / "x-last.pth"
    save_checkpoint(state, last)
    cfg = {**trained["cfg"], "checkpoint_dir": str(tmp_path / "run")}
    with pytest.raises(FileNotFoundError, match="victim.pth, is missing"):  # looked for in the two folders only
        run("LRURec", "tiny", config_dict=cfg, resume=str(last))
    assert _snapshot(outside) == before
    (folder / "victim.pth").write_bytes(open(trained["best"], "rb").read())
    run("LRURec", "tiny", config_dict=cfg, resume=str(last))
    assert _snapshot(outside) == before
    # the best model went to the resumed file's folder, under the recorded file name only
    assert load_checkpoint(folder / "victim.pth")["epoch"] in (0, 1)
    # training completed: the run's own -last file (beside its best) is removed, nothing else
    assert sorted(os.listdir(folder)) == ["victim.pth", "x-last.pth"]


@pytest.mark.parametrize("recorded", ["../../etc/passwd", "/tmp/x.txt", "", ".hidden.pth", "a-last.pth", 7])
def test_resume_refuses_a_recorded_best_that_is_not_a_pth_name(recorded, trained, tmp_path, capsys):
    state = load_checkpoint(trained["last"])
    state["best_model_file"] = recorded
    save_checkpoint(state, tmp_path / "x-last.pth")
    cfg = {**trained["cfg"], "checkpoint_dir": str(tmp_path / "run")}
    args = ["--model=LRURec", "--dataset=tiny"] + [f"--{k}={v}" for k, v in cfg.items() if k not in ("metrics", "topk")]
    assert main([*args, f"--resume={tmp_path / 'x-last.pth'}"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: ") and "records its best checkpoint as" in line


def _poisoned_outside(tmp_path, marker):
    """A folder an attacker points a checkpoint's paths at: pickles that act, and other data."""
    outside = tmp_path / "outside"
    evil = pickle.dumps(Gadget(os.system, f"touch {marker}"))
    for name in ("dataset.pth", "dataloaders.pth", "tiny-WholeSequenceDataset.pth",
                 "tiny-for-LRURec-dataloader.pth"):
        os.makedirs(outside, exist_ok=True)
        (outside / name).write_bytes(evil)
    write_inter(outside / "data", "tiny", [(u, 1, t) for u in range(1, 5) for t in range(3)])
    return outside


def _redirect(src, dst, outside):
    state = load_checkpoint(src)
    state["config"].final_config_dict.update(
        dataset_save_path=str(outside / "dataset.pth"), dataloaders_save_path=str(outside / "dataloaders.pth"),
        checkpoint_dir=str(outside), data_path=str(outside / "data" / "tiny"), save_dataset=True,
        save_dataloaders=True, pre_model_path=str(outside / "dataset.pth"))
    save_checkpoint(state, dst)
    return str(dst)


def test_load_data_and_model_ignores_stored_paths(trained, tmp_path):
    from recbole.utils import get_trainer

    marker = tmp_path / MARK
    outside = _poisoned_outside(tmp_path, marker)
    before = _snapshot(outside)
    crafted = _redirect(trained["best"], tmp_path / "redirected.pth", outside)
    config, model, dataset, train, valid, test = load_data_and_model(crafted, {"data_path": trained["data_path"]})
    assert not marker.exists() and _snapshot(outside) == before
    assert config["data_path"] == os.path.join(trained["data_path"], "tiny")
    assert config["dataset_save_path"] is None and config["checkpoint_dir"] == "saved" and not config["save_dataset"]
    assert dataset.user_num - 1 == 40  # the caller's data (40 users), not the file's (4)
    result = get_trainer(config["MODEL_TYPE"], "LRURec")(config, model).evaluate(test, load_best_model=False)
    assert 0.0 <= result["ndcg@10"] <= 1.0


def test_recbole_name_of_load_data_and_model_ignores_stored_paths(trained, tmp_path):
    from recbole.quick_start import load_data_and_model as recbole_name

    marker = tmp_path / MARK
    outside = _poisoned_outside(tmp_path, marker)
    before = _snapshot(outside)
    try:
        recbole_name(_redirect(trained["best"], tmp_path / "redirected.pth", outside))
    except Exception:  # noqa: BLE001  (only what it touched matters here)
        pass
    assert not marker.exists() and _snapshot(outside) == before


@pytest.mark.parametrize("name", ["../../etc", "a/b", ".hidden"])
def test_load_data_and_model_refuses_a_dataset_name_that_is_a_path(name, trained, tmp_path):
    state = load_checkpoint(trained["best"])
    state["config"].final_config_dict["dataset"] = name
    object.__setattr__(state["config"], "dataset", name)
    save_checkpoint(state, tmp_path / "x.pth")
    with pytest.raises(CheckpointError, match="not a dataset name"):
        load_data_and_model(tmp_path / "x.pth")
