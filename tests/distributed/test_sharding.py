"""The pieces of multi-process training that need no process group: sharding, backend choice,
the GPU-count check and the patches' registration."""
import numpy as np
import pytest
import torch

from recbole_lru import distributed as D
from recbole_lru import launch as L


@pytest.mark.parametrize("n,batch,world", [(41, 16, 2), (40, 16, 2), (33, 32, 2), (97, 10, 3), (5, 64, 4),
                                           (17, 16, 2), (2, 1, 2), (1000, 128, 4)],
                         ids=lambda v: str(v))
def test_every_row_once_same_step_count_no_empty_batch(n, batch, world):
    order = np.random.default_rng(n).permutation(n)
    shards = [D.shard_batches(n, batch, world, r, order) for r in range(world)]
    seen = np.concatenate([b for s in shards for b in s])
    assert sorted(seen.tolist()) == list(range(n))  # every row, each exactly once
    assert len({len(s) for s in shards}) == 1  # DDP: the same number of steps on every rank
    assert min(len(b) for s in shards for b in s) >= 1
    for step in range(len(shards[0])):  # each global batch is split evenly
        sizes = [len(s[step]) for s in shards]
        assert max(sizes) - min(sizes) <= 1


def test_global_batches_follow_the_single_process_order():
    # rank shares of step k together are exactly the k-th batch a single process would take
    order = np.arange(50)[::-1]
    shards = [D.shard_batches(50, 16, 2, r, order) for r in range(2)]
    assert np.array_equal(np.concatenate([shards[0][0], shards[1][0]]), order[:16])
    # 50 = 3*16 + 2: the last global batch has 2 rows, enough for 2 processes
    assert [len(shards[0][k]) + len(shards[1][k]) for k in range(4)] == [16, 16, 16, 2]
    # with 3 processes a 2-row batch would leave one empty: it joins the previous batch
    shards3 = [D.shard_batches(50, 16, 3, r, order) for r in range(3)]
    assert [sum(len(s[k]) for s in shards3) for k in range(3)] == [16, 16, 18]


def test_fewer_rows_than_processes_is_one_clear_error():
    with pytest.raises(D.DistributedSetupError, match="3 rows cannot be shared by 4 processes"):
        D.shard_batches(3, 8, 4, 0)


def test_backend_follows_the_device_and_can_be_overridden():
    assert D.choose_backend(use_cuda=False) == "gloo"
    assert D.choose_backend(use_cuda=True) == "nccl"
    assert D.choose_backend(use_cuda=True, requested="gloo") == "gloo"
    assert D.choose_backend(use_cuda=False, requested="auto") == "gloo"
    with pytest.raises(D.DistributedSetupError, match="dist_backend=nccl needs one CUDA GPU"):
        D.choose_backend(use_cuda=False, requested="nccl")
    with pytest.raises(D.DistributedSetupError, match="must be one of"):
        D.choose_backend(use_cuda=False, requested="tcp")


def test_too_few_gpus_says_what_is_possible_in_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(D.DistributedSetupError) as err:
        D._gpu_plan("0,1", True, 2)
    msg = str(err.value)
    assert "\n" not in msg
    assert "--nproc=2 needs one GPU per process, but only 1 can be used" in msg and "--nproc=1" in msg
    assert "--use_gpu=False" in msg
    assert D._gpu_plan("0", True, 1) is True
    assert D._gpu_plan("0,1", False, 2) is False  # use_gpu=False: CPU processes, gloo
    assert D._gpu_plan("", True, 2) is False


def test_cpu_machine_runs_cpu_processes_whatever_gpu_id_says(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert D._gpu_plan("0", True, 4) is False  # RecBole's default gpu_id '0' on a CPU machine


def test_machines_that_do_not_fit_the_world_are_refused_before_starting():
    with pytest.raises(D.DistributedSetupError, match="do not fit in --world_size=2"):
        L.run("LRURec", "ml-100k", nproc=2, world_size=2, group_offset=1)


def test_registration_applies_the_patches_and_unregister_restores_recbole():
    import recbole.trainer.trainer as trainer
    from recbole.config.configurator import Config

    import recbole_lru

    patched = (D.init_device, D._ddp, D._get_tensorboard)
    assert (Config._init_device, trainer.DistributedDataParallel, trainer.get_tensorboard) == patched
    D.install()  # what a launched process calls: idempotent once registered
    assert (Config._init_device, trainer.DistributedDataParallel, trainer.get_tensorboard) == patched
    recbole_lru.unregister()
    try:
        originals = (D._ORIGINALS["init_device"], D._ORIGINALS["ddp"], D._ORIGINALS["get_tensorboard"])
        assert (Config._init_device, trainer.DistributedDataParallel, trainer.get_tensorboard) == originals
    finally:
        recbole_lru.register()
    assert (Config._init_device, trainer.DistributedDataParallel, trainer.get_tensorboard) == patched
