"""The plugin's models behave like RecBole's built-in ones wherever RecBole looks a model up."""
import json
import logging
import os
import subprocess
import sys

import pytest
import torch

import recbole_lru
from recbole_lru.cli import main as cli_main
from recbole_lru.compat import UnsafeCheckpointError, load_checkpoint
from recbole_lru.registry import DatasetNotFoundError, ModelNotFoundError, available_models

from conftest import REPO

MODELS = ["LRURec", "LinRec"]


def _cfg(tiny_data, model, **extra):
    return {**tiny_data, "model": model, "dataset": "tiny", **extra}


@pytest.mark.parametrize("model", MODELS)
def test_get_model_and_config(model, tiny_data):
    from recbole.config import Config
    from recbole.utils import get_model, get_trainer

    cls = get_model(model)
    assert cls is getattr(recbole_lru, model)
    config = Config(model=model, dataset="tiny", config_dict=tiny_data)
    assert config["MODEL_TYPE"].name == "SEQUENTIAL"
    # the model's own YAML is applied (not RecBole's SASRec defaults)
    assert config["train_neg_sample_args"]["distribution"] == "none"
    trainer = get_trainer(config["MODEL_TYPE"], model)
    assert trainer.__name__ == "SequentialTrainer"


def test_model_yaml_priority(tiny_data):
    from recbole.config import Config

    config = Config(model="LRURec", dataset="tiny", config_dict=tiny_data)
    assert config["learner"] == "adamw" and config["r_min"] == 0.8
    assert config["hidden_size"] == 16  # user dict beats model yaml
    # sample.yaml (MAX_ITEM_LIST_LENGTH 50) beats a model yaml, as for built-in models; dataset yaml beats both
    config = Config(model="LRURec", dataset="ml-1m-pos4", config_dict={"data_path": tiny_data["data_path"]})
    assert config["MAX_ITEM_LIST_LENGTH"] == 200
    assert config["load_col"] == {"inter": ["user_id", "item_id", "rating", "timestamp"]}
    video = Config(model="SASRec", dataset="amazon-video-games",
                   config_dict={"data_path": tiny_data["data_path"], "train_neg_sample_args": None})
    assert video["TIME_FIELD"] == "seq_pos" and video["MAX_ITEM_LIST_LENGTH"] == 50


def test_builtin_models_unchanged(tiny_data):
    from recbole.config import Config
    from recbole.utils import get_model

    from recbole.model.sequential_recommender.sasrec import SASRec

    assert get_model("SASRec") is SASRec
    config = Config(model="SASRec", dataset="ml-100k", config_dict={"train_neg_sample_args": None})
    assert config["n_heads"] == 2 and config["learner"] == "adam" and config["MAX_ITEM_LIST_LENGTH"] == 50
    assert config["mask_history"] is None


def test_user_yaml_file_mixes_in(tiny_data, tmp_path):
    from recbole.quick_start import run_recbole

    yaml_file = tmp_path / "mine.yaml"
    lines = [f"model: LRURec", "dataset: tiny"] + [f"{k}: {json.dumps(v)}" for k, v in tiny_data.items()]
    yaml_file.write_text("\n".join(lines) + "\n")
    result = run_recbole(config_file_list=[str(yaml_file)])
    assert 0.0 <= result["test_result"]["recall@10"] <= 1.0


@pytest.mark.parametrize("model", MODELS)
def test_run_recbole_and_load(model, tiny_data):
    from recbole.quick_start import load_data_and_model, run_recbole

    result = run_recbole(model=model, dataset="tiny", config_dict=tiny_data)
    assert set(result["test_result"]) == {"recall@10", "ndcg@10"}
    files = [f for f in os.listdir(tiny_data["checkpoint_dir"]) if f.startswith(model)]
    assert len(files) == 1
    # a checkpoint's stored data_path is ignored: the caller says where the data is
    config, net, dataset, train, valid, test = load_data_and_model(os.path.join(tiny_data["checkpoint_dir"], files[0]),
                                                                   {"data_path": tiny_data["data_path"]})
    assert type(net).__name__ == model and config["model"] == model


def test_quick_start_run_and_objective(tiny_data):
    from recbole.quick_start import objective_function, run

    res = run("LRURec", "tiny", config_dict=dict(tiny_data))
    assert "test_result" in res
    out = objective_function(config_dict=_cfg(tiny_data, "LinRec"), saved=False)
    assert out["model"] == "LinRec"


def test_create_dataset_uses_whole_sequence_class(tiny_data):
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation

    config = Config(model="LRURec", dataset="tiny", config_dict={**tiny_data, "train_mode": "whole_sequence"})
    dataset = create_dataset(config)
    assert type(dataset).__name__ == "WholeSequenceDataset"
    train, valid, test = data_preparation(config, dataset)
    prefix_cfg = Config(model="LRURec", dataset="tiny", config_dict={**tiny_data, "train_mode": "prefix"})
    p_train, p_valid, p_test = data_preparation(prefix_cfg, create_dataset(prefix_cfg))
    # one row per user window, same validation and test rows as the prefix regime
    assert len(train.dataset) == 40 < len(p_train.dataset)
    for a, b in ((valid, p_valid), (test, p_test)):
        for field in ("user_id", "item_id", "item_id_list", "item_length"):
            assert torch.equal(a.dataset.inter_feat[field], b.dataset.inter_feat[field])


def test_hypertuning(tiny_data, tmp_path):
    from recbole.quick_start import objective_function
    from recbole.trainer import HyperTuning

    params = tmp_path / "p.hyper"
    params.write_text("hidden_dropout_prob choice [0.2,0.4]\n")
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in _cfg(tiny_data, "LRURec", saved=False).items()))
    hp = HyperTuning(objective_function, params_file=str(params), fixed_config_file_list=[str(fixed)], algo="exhaustive")
    hp.run()
    assert len(hp.params2result) == 2


def test_unknown_model_lists_available():
    from recbole.utils import get_model

    with pytest.raises(ModelNotFoundError) as err:
        get_model("NoSuchModel")
    assert "LRURec" in str(err.value) and "SASRec" in str(err.value)
    assert "Did you mean" not in str(err.value)
    assert "LinRec" in available_models()
    with pytest.raises(ModelNotFoundError, match="Did you mean LRURec\\?"):
        get_model("LRUrec")
    with pytest.raises(ModelNotFoundError, match="Did you mean SASRec"):
        get_model("SASrec")


def test_missing_dataset_clear_error(tmp_path):
    from recbole.config import Config
    from recbole.data import create_dataset

    config = Config(model="LRURec", dataset="no-such-data", config_dict={"data_path": str(tmp_path)})
    with pytest.raises(DatasetNotFoundError) as err:
        create_dataset(config)
    assert str(tmp_path) in str(err.value) and "--data_path" in str(err.value)


def test_checkpoint_round_trip_and_tampered(tiny_data, tmp_path):
    from recbole.quick_start import load_data_and_model, run_recbole

    run_recbole(model="LRURec", dataset="tiny", config_dict=tiny_data)
    ckpt = os.path.join(tiny_data["checkpoint_dir"], os.listdir(tiny_data["checkpoint_dir"])[0])
    state = load_checkpoint(ckpt)
    assert state["config"]["model"] == "LRURec" and "state_dict" in state

    class Payload:
        def __reduce__(self):
            return (os.system, ("touch pwned",))

    bad = tmp_path / "bad.pth"
    torch.save({"config": Payload(), "state_dict": {}}, bad)
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(bad)
    with pytest.raises(UnsafeCheckpointError):
        load_data_and_model(str(bad))
    assert not os.path.exists("pwned")


@pytest.mark.slow
def test_spawned_process_resolves_models():
    """run(nproc>1) spawns processes whose target is recbole_lru's, so they register the models."""
    import recbole.quick_start.quick_start as qs
    import torch.multiprocessing as mp

    assert qs.run_recboles.__module__ == "recbole_lru.patches"
    ctx = mp.get_context("spawn")
    q = ctx.SimpleQueue()
    p = ctx.Process(target=_child_lookup, args=(q,))
    p.start()
    p.join(120)
    assert q.get() == "LRURec"


def _child_lookup(q):
    import pickle

    import recbole.quick_start.quick_start as qs  # noqa: F401
    from recbole_lru.patches import run_recboles  # what mp.spawn unpickles in the child

    pickle.dumps(run_recboles)
    from recbole.utils import get_model

    q.put(get_model("LRURec").__name__)


def _cli(capsys, *args):
    """The command line's main() in this process (the code run_recbole_lru.py runs)."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    try:
        rc = cli_main(list(args))
    finally:
        # RecBole's init_logger may attach handlers to this test's captured streams: drop them, or
        # a later test's log records go to a closed stream
        root.handlers[:] = handlers
    out = capsys.readouterr()
    return rc, out.out, out.err


def _overrides(tiny_data):
    return [f"--{k}={v}" for k, v in tiny_data.items() if k not in ("metrics", "topk")]


def test_cli_run_with_override(tiny_data, capsys, caplog):
    # RecBole's init_logger adds no file handler under pytest (basicConfig sees pytest's), so the
    # logged config is read from pytest's capture
    caplog.set_level(logging.INFO)
    rc, out, err = _cli(capsys, "--model=LRURec", "--dataset=tiny", "--n_layers=1", *_overrides(tiny_data))
    assert rc == 0, err[-2000:]
    assert "recall@10" in out
    assert "n_layers = 1" in caplog.text


def test_cli_params_file(tiny_data, tmp_path, capsys):
    params = tmp_path / "grid.hyper"
    params.write_text("hidden_dropout_prob choice [0.2,0.4]\n")
    out_file = tmp_path / "trials.jsonl"
    rc, _, err = _cli(capsys, "--model=LRURec", "--dataset=tiny", f"--params_file={params}",
                      f"--output_file={out_file}", *_overrides(tiny_data))
    assert rc == 0, err[-2000:]
    trials = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert len(trials) == 2 and {t["params"]["hidden_dropout_prob"] for t in trials} == {0.2, 0.4}
    assert "recall@10" in trials[0]["test_result"]


def test_cli_unknown_model_and_missing_dataset(tmp_path, capsys):
    rc, _, err = _cli(capsys, "--model=Nope", "--dataset=ml-100k")
    assert rc == 2 and "Unknown model 'Nope'" in err and "Traceback" not in err
    rc, _, err = _cli(capsys, "--model=LRURec", "--dataset=absent", f"--data_path={tmp_path}")
    assert rc == 2 and "--data_path" in err and "Traceback" not in err


@pytest.mark.slow
def test_run_script_in_its_own_process(tiny_data):
    """run_recbole_lru.py itself: a fresh interpreter, the repository on PYTHONPATH."""
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, os.path.join(REPO, "run_recbole_lru.py"), "--model=LRURec",
                           "--dataset=tiny", "--n_layers=1", *_overrides(tiny_data)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "recall@10" in proc.stdout


_FAULTS = r"""
import resource, sys, torch
from recbole_lru.compat import keep_freed_memory
print(keep_freed_memory())
x = torch.ones(25_000_000).sum()  # the first use faults its pages in either way
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(12):
    x = x + torch.ones(25_000_000).sum()  # a 100 MB buffer allocated and freed each time
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0)
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc allocator settings")
def test_keep_freed_memory_stops_page_faulting_large_buffers():
    def faults(mode):
        env = dict(os.environ, RECBOLE_LRU_MALLOC=mode, PYTHONPATH=REPO)
        out = subprocess.run([sys.executable, "-c", _FAULTS], env=env, capture_output=True, text=True,
                             check=True).stdout.split()
        return out[0] == "True", int(out[1])

    tuned_on, tuned = faults("")
    default_on, default = faults("default")
    assert tuned_on and not default_on
    # default glibc maps and unmaps each 100 MB buffer: ~24k page faults per use. Tuned, the heap still
    # grows (and faults) for the first few uses while small allocations fragment it, then buffers are
    # reused: 1 to 3 of the 12 uses fault here, so the bound leaves room for twice that.
    assert default > 12 * 20_000
    assert tuned < default * 0.5
