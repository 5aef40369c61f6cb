"""Training and evaluation with 2 CPU processes (gloo) on tiny data, checked against one process.

Each test starts its processes once and checks several things in them, because starting a
process (importing torch and RecBole) costs more than the training itself.
"""
import glob
import os
import threading
from collections import Counter

import pytest
import torch

from conftest import tiny_rows, write_inter
from recbole_lru import launch as L

pytestmark = pytest.mark.slow

SPECS = [  # (model, train_mode, extra config): the plugin's models in both training regimes
    ("LRURec", "whole_sequence", {}),
    ("LRURec", "prefix", {}),
    ("LinRec", "whole_sequence", {"causal": True}),
    ("LinRec", "prefix", {"causal": True}),
    ("SASRecWS", "whole_sequence", {}),
    ("SASRecWS", "prefix", {}),
]


def _config(tmp_path, **extra):
    # 41 users: an odd count, so an even split between 2 processes would need padding
    data_path = write_inter(tmp_path / "data", "tiny", tiny_rows(n_users=41))
    return {"data_path": data_path, "load_col": {"inter": ["user_id", "item_id", "timestamp"]}, "epochs": 1,
            "train_batch_size": 16, "eval_batch_size": 16, "show_progress": False,
            "checkpoint_dir": str(tmp_path / "saved"), "hidden_size": 16, "n_heads": 2, "inner_size": 32,
            "MAX_ITEM_LIST_LENGTH": 10, "seed": 2024, "reproducibility": True, "metrics": ["Recall", "NDCG", "MRR"],
            "topk": [5, 10], "valid_metric": "Recall@10", "dist_timeout": 60, **extra}


def _build(model, config_dict):
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    config = Config(model=model, dataset="tiny", config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    train, valid, test = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    net = get_model(model)(config, train._dataset).to(config["device"])
    return config, train, valid, test, net, get_trainer(config["MODEL_TYPE"], model)(config, net)


def _worker(local_rank, dicts, out_dir):
    import torch.distributed as dist

    from recbole_lru.trainer import NonFiniteLossError

    out = {}
    for name, mode, extra in SPECS:
        config, train, valid, test, net, trainer = _build(name, {**dicts[local_rank], **extra, "train_mode": mode})
        rank = dist.get_rank()  # the first Config joined the process group
        seen, loss = [], net.calculate_loss

        def counting(inter, loss=loss, config=config):
            seen.extend(zip(inter[config["USER_ID_FIELD"]].tolist(), inter[config["ITEM_ID_FIELD"]].tolist()))
            return loss(inter)

        net.calculate_loss = counting
        trainer.fit(train, valid, saved=False)
        key = f"{name}-{mode}"
        if rank == 0:
            torch.save(net.state_dict(), os.path.join(out_dir, f"{key}.pth"))
        out[key] = {"seen": seen, "valid": dict(trainer.evaluate(valid, load_best_model=False)),
                    "test": dict(trainer.evaluate(test, load_best_model=False)),
                    "weights": float(sum(p.double().sum() for p in net.parameters()))}

    # a non-finite loss in one process stops both at the same step
    config, train, valid, _, net, trainer = _build("LRURec", {**dicts[local_rank], "epochs": 3})
    if rank == 1:
        net.calculate_loss = lambda inter: torch.tensor(float("nan"), requires_grad=True)
    try:
        trainer.fit(train, valid, saved=False)
        out["nan"] = "not stopped"
    except NonFiniteLossError as err:
        out["nan"] = str(err)
    # a time budget set for rank 0 only: rank 0's clock decides, both stop after one epoch
    budget = {"time_budget": 1e-9} if rank == 0 else {}
    config, train, valid, _, net, trainer = _build("LRURec", {**dicts[local_rank], "epochs": 3, **budget})
    trainer.fit(train, valid, saved=False)
    out["epochs_run"] = len(trainer.train_loss_dict)
    return out


def test_two_processes_train_every_row_once_and_evaluate_like_one(tmp_path):
    base = _config(tmp_path)
    port = L.free_port()
    dicts = [L.distributed_config(base, r, 2, 2, "127.0.0.1", port, 0) for r in range(2)]
    ranks = L.launch(_worker, (dicts, str(tmp_path)), nproc=2, timeout=150)

    for name, mode, extra in SPECS:
        key = f"{name}-{mode}"
        config, train, valid, test, net, trainer = _build(name, {**base, **extra, "train_mode": mode})
        rows = train._dataset.inter_feat
        expected = Counter(zip(rows[config["USER_ID_FIELD"]].tolist(), rows[config["ITEM_ID_FIELD"]].tolist()))
        seen = Counter(map(tuple, ranks[0][key]["seen"] + ranks[1][key]["seen"]))
        assert seen == expected, f"{key}: rows not used exactly once in the epoch"
        assert ranks[0][key]["seen"] and ranks[1][key]["seen"]
        assert ranks[0][key]["weights"] == ranks[1][key]["weights"], f"{key}: ranks diverged"
        # the same weights in one process give the same metrics, every user counted once
        net.load_state_dict(torch.load(tmp_path / f"{key}.pth"))
        for split, data in (("valid", valid), ("test", test)):
            single = dict(trainer.evaluate(data, load_best_model=False))
            assert ranks[0][key][split] == ranks[1][key][split] == single, f"{key} {split}"

    for r in ranks:
        assert r["nan"].startswith("Training loss is"), r["nan"]
    assert "nan or inf in another process" in ranks[0]["nan"] and "is nan" in ranks[1]["nan"]
    assert ranks[0]["epochs_run"] == ranks[1]["epochs_run"] == 1


def test_rank0_writes_the_files_and_two_machines_resume(tmp_path):
    cfg = _config(tmp_path, epochs=3, hidden_dropout_prob=0.0, attn_dropout_prob=0.0)
    first = L.run("LRURec", "tiny", config_dict={**cfg, "time_budget": 1e-9}, nproc=2, ip="127.0.0.1",
                  port=str(L.free_port()), timeout=120)
    assert first["test_result"]
    saved = sorted(os.listdir(tmp_path / "saved"), key=lambda f: f.endswith("-last.pth"))
    assert len(saved) == 2 and saved[1].endswith("-last.pth"), saved  # one best, one resumable
    assert len(glob.glob("log/LRURec/*.log")) == 1 and len(os.listdir("log_tensorboard")) == 1
    last = str(tmp_path / "saved" / saved[1])
    # the best checkpoint loads in one process, and its weights give the same test metrics there
    from recbole.quick_start import load_data_and_model
    from recbole.utils import get_trainer

    config, model, _, _, _, test = load_data_and_model(str(tmp_path / "saved" / saved[0]),
                                                       {"data_path": cfg["data_path"]})
    single = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    assert dict(single.evaluate(test, load_best_model=False)) == dict(first["test_result"])

    # two process groups on 127.0.0.1 form one world of 2, as two machines would
    port, results, errors = str(L.free_port()), [None, None], []

    def machine(k):
        try:
            results[k] = L.run("LRURec", "tiny", config_dict=cfg, nproc=1, world_size=2, group_offset=k,
                               ip="127.0.0.1", port=port, resume=last, timeout=120)
        except Exception as err:  # surfaces in the main thread
            errors.append(err)

    threads = [threading.Thread(target=machine, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(150)
    assert not errors, errors
    assert results[0]["test_result"] == results[1]["test_result"]
    assert os.listdir(tmp_path / "saved") == [saved[0]]  # training completed: -last removed
    logs = sorted(glob.glob("log/LRURec/*.log"))
    # the first run's, the single-process check's and the resumed run's (rank 0 only)
    assert len(logs) == 3 and "Resume training from epoch 1" in open(logs[-1]).read()


def _fail_on_rank1(local_rank, port):
    import datetime

    import torch.distributed as dist

    dist.init_process_group("gloo", rank=local_rank, world_size=2, init_method=f"tcp://127.0.0.1:{port}",
                            timeout=datetime.timedelta(seconds=60))
    if local_rank == 1:
        raise ValueError("bad data in process 1")
    dist.barrier()  # rank 0 waits for a process that is gone


def test_one_failing_process_ends_the_run_with_its_own_error():
    with pytest.raises(ValueError, match="bad data in process 1"):
        L.launch(_fail_on_rank1, (L.free_port(),), nproc=2, timeout=90)
