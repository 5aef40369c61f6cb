"""Multi-process training with torch.distributed, on CPU (gloo) as well as on GPUs (NCCL).

RecBole 1.2.1's ``Config._init_device`` always asks for NCCL and asserts one GPU id per process,
its trainer wraps the model in ``DistributedDataParallel(device_ids=[rank])`` (a GPU-only form),
and its loaders shard with ``DistributedSampler(drop_last=False)``, which pads the last shard by
repeating rows: a training row or an evaluated user can count twice, and the evaluation average
weighs each rank by its number of batches. This module provides:

* :func:`init_device`, the replacement of ``Config._init_device`` for a process that has a
  ``local_rank``: the backend follows the device (NCCL for one GPU per process, gloo on CPU;
  config key ``dist_backend`` overrides), a GPU request that the machine cannot meet fails with
  one line, ``dist_timeout`` (seconds) bounds every collective;
* :func:`install` / :func:`uninstall`: the RecBole attributes to replace (:data:`PATCHES`);
* exact sharding (:func:`shard_batches`, :class:`ShardedTrainData`): each epoch's rows are cut
  into global batches of ``train_batch_size`` and each global batch is split between the ranks,
  so every row is used once per epoch and every rank runs the same number of steps;
* :func:`evaluate`: each rank ranks its own contiguous block of users, the per-user results are
  gathered and every rank computes the metrics of all users, each counted once;
* collectives the trainer uses to stop together (:func:`any_rank`, :func:`from_main`).

Starting the processes of a run (``run``, ``launch``) is :mod:`recbole_lru.launch`'s job.
"""
from __future__ import annotations

import copy
import datetime
import os

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["DistributedSetupError", "BACKENDS", "PATCHES", "install", "uninstall", "init_device",
           "choose_backend", "is_distributed", "is_main", "any_rank", "from_main", "shard_batches",
           "ShardedTrainData", "evaluate", "patch_owner"]

BACKENDS = ("gloo", "nccl", "mpi")


class DistributedSetupError(ValueError):
    """A multi-process request this machine or config cannot serve."""


# --------------------------------------------------------------------------------------------
# Device and process group
# --------------------------------------------------------------------------------------------
def choose_backend(use_cuda: bool, requested=None) -> str:
    """NCCL when each process drives a GPU, gloo on CPU; ``requested`` (``dist_backend``) wins."""
    if requested in (None, "", "auto"):
        return "nccl" if use_cuda else "gloo"
    if requested not in BACKENDS:
        raise DistributedSetupError(f"dist_backend={requested!r} must be one of {list(BACKENDS)} (or auto).")
    if requested == "nccl" and not use_cuda:
        raise DistributedSetupError("dist_backend=nccl needs one CUDA GPU per process and this run is on CPU; "
                                    "use dist_backend=gloo (the default on CPU).")
    return requested


def _gpu_plan(gpu_id: str, use_gpu, nproc: int) -> bool:
    """Whether the processes run on GPUs; raises when GPUs are asked for but too few are usable."""
    ids = [g for g in str(gpu_id or "").split(",") if g.strip()]
    if use_gpu is False or not ids or not torch.cuda.is_available():
        return False
    visible = torch.cuda.device_count()
    usable = min(len(ids), visible)
    if usable < nproc:
        raise DistributedSetupError(
            f"--nproc={nproc} needs one GPU per process, but only {usable} can be used here "
            f"(gpu_id={gpu_id!r} lists {len(ids)}, {visible} visible): run with --nproc={max(usable, 1)}, "
            f"list more GPUs with --gpu_id=0,1,..., or use CPU processes with --use_gpu=False.")
    return True


def init_device(self) -> None:
    """``Config._init_device`` for every backend: a process without ``local_rank`` keeps RecBole's
    single-process behaviour; one with it joins the process group on its own device."""
    cfg = self.final_config_dict
    if "local_rank" not in cfg:
        return _ORIGINALS["init_device"](self)
    gpu_id = cfg["gpu_id"]
    cfg["gpu_id"] = ",".join(map(str, gpu_id)) if isinstance(gpu_id, (tuple, list)) else str(gpu_id)
    os.environ["CUDA_VISIBLE_DEVICES"] = cfg["gpu_id"]  # as RecBole does, before CUDA starts
    local_rank, nproc = int(cfg["local_rank"]), int(cfg.get("nproc") or 1)
    use_cuda = _gpu_plan(cfg["gpu_id"], cfg.get("use_gpu"), nproc)
    backend = choose_backend(use_cuda, cfg.get("dist_backend"))
    if not dist.is_initialized():
        dist.init_process_group(
            backend=backend, rank=local_rank + int(cfg.get("offset") or 0), world_size=int(cfg["world_size"]),
            init_method=f"tcp://{cfg['ip']}:{cfg['port']}",
            timeout=datetime.timedelta(seconds=float(cfg.get("dist_timeout") or 1800)))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        cfg["device"] = torch.device("cuda", local_rank)
    else:
        cfg["device"] = torch.device("cpu")
    cfg["dist_backend"] = backend
    cfg["single_spec"] = False
    if local_rank != 0:  # RecBole's convention: only each machine's first process reports
        cfg["state"], cfg["show_progress"], cfg["verbose"] = "error", False, False


def _ddp(module, device_ids=None, **kwargs):
    """RecBole passes ``device_ids=[local_rank]``, which DDP accepts only for a module on a GPU."""
    on_cpu = next(module.parameters()).device.type == "cpu"
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=None if on_cpu else device_ids, **kwargs)


class _NullWriter:
    """TensorBoard writer of processes other than rank 0: records nothing, creates no folder."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def _get_tensorboard(logger):
    if dist.is_initialized() and dist.get_rank() != 0:
        return _NullWriter()
    return _ORIGINALS["get_tensorboard"](logger)


def _ensure_dir(dir_path) -> None:
    """RecBole's ``ensure_dir`` checks, then creates: two processes sharing a folder (the ranks of a
    run, parallel trials) can both see it missing, and the second ``makedirs`` fails."""
    os.makedirs(dir_path, exist_ok=True)


# every module that binds ensure_dir by name at its import
_ENSURE_DIR_OWNERS = ("recbole.utils.utils", "recbole.utils", "recbole.utils.logger", "recbole.trainer.trainer",
                      "recbole.data.utils", "recbole.data.dataset.dataset")

# (module, attribute, replacement, key of the original): what install() sets
PATCHES = (
    ("recbole.config.configurator.Config", "_init_device", init_device, "init_device"),
    ("recbole.trainer.trainer", "DistributedDataParallel", _ddp, "ddp"),
    ("recbole.trainer.trainer", "get_tensorboard", _get_tensorboard, "get_tensorboard"),
) + tuple((owner, "ensure_dir", _ensure_dir, f"ensure_dir:{owner}") for owner in _ENSURE_DIR_OWNERS)
_ORIGINALS: dict = {}


def _capture_originals() -> None:
    # at import, before anything installs these replacements: the functions they fall back to
    for path, attr, new, key in PATCHES:
        current = getattr(patch_owner(path), attr)
        if current is not new:
            _ORIGINALS.setdefault(key, current)


def patch_owner(path: str):
    import importlib

    module, _, cls = path.rpartition(".") if path.endswith("Config") else (path, "", "")
    return getattr(importlib.import_module(module), cls) if cls else importlib.import_module(path)


def install() -> None:
    """Apply :data:`PATCHES` (idempotent); the originals are kept for :func:`uninstall`."""
    for path, attr, new, key in PATCHES:
        owner = patch_owner(path)
        if getattr(owner, attr) is not new:
            _ORIGINALS[key] = getattr(owner, attr)
            setattr(owner, attr, new)


def uninstall() -> None:
    for path, attr, new, key in PATCHES:
        owner = patch_owner(path)
        if getattr(owner, attr) is new and key in _ORIGINALS:
            setattr(owner, attr, _ORIGINALS[key])


_capture_originals()


# --------------------------------------------------------------------------------------------
# Collectives
# --------------------------------------------------------------------------------------------
def is_distributed(config) -> bool:
    return not config["single_spec"] and dist.is_initialized()


def is_main(config) -> bool:
    """The one process that writes files (checkpoints, ``-last`` files, the log): global rank 0.
    Other machines need no copy of the best checkpoint: :func:`evaluate` sends its weights."""
    return config["single_spec"] or not dist.is_initialized() or dist.get_rank() == 0


def any_rank(flag: bool, config) -> bool:
    """True on every rank when ``flag`` is true on any rank (one tiny all-reduce)."""
    if not is_distributed(config):
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=config["device"])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def from_main(obj, config):
    """Rank 0's ``obj`` on every rank (file names, stop decisions taken from one clock)."""
    if not is_distributed(config):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def single_process_config(config):
    """``config`` as one process has it (what checkpoints store), so that a checkpoint written
    under DDP loads with ``load_data_and_model`` or ``--resume`` without a process group."""
    if config["single_spec"]:
        return config
    view = copy.copy(config)
    view.final_config_dict = {k: v for k, v in config.final_config_dict.items()
                              if k not in ("nproc", "world_size", "ip", "port", "offset", "dist_backend")}
    view.final_config_dict.update(single_spec=True, local_rank=0)
    return view


def barrier(config) -> None:
    if is_distributed(config):
        dist.barrier()


# --------------------------------------------------------------------------------------------
# Exact sharding
# --------------------------------------------------------------------------------------------
def shard_batches(n: int, batch_size: int, world: int, rank: int, order=None) -> list[np.ndarray]:
    """Rank ``rank``'s batches of one epoch over rows ``order`` (default ``0..n-1``).

    The rows are cut into global batches of ``batch_size``; a last global batch with fewer rows
    than processes joins the one before it (so no rank gets an empty batch), and each global batch
    is split into ``world`` parts differing by at most one row. Over all ranks every row appears
    exactly once, and every rank gets the same number of batches (DDP needs equal step counts).
    """
    if n < world:
        raise DistributedSetupError(f"{n} rows cannot be shared by {world} processes; use fewer processes.")
    order = np.arange(n) if order is None else np.asarray(order)
    bounds = list(range(0, n, batch_size)) + [n]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < world:
        del bounds[-2]
    return [np.array_split(order[a:b], world)[rank] for a, b in zip(bounds[:-1], bounds[1:])]


class ShardedTrainData:
    """One epoch of a RecBole training loader as this rank's share (see :func:`shard_batches`).

    The order depends on ``seed`` and the epoch only, the same on every rank, so a resumed run
    draws exactly the batches the uninterrupted run would have drawn.
    """

    shuffle = False  # RecBole's trainer would call a DistributedSampler's set_epoch otherwise

    def __init__(self, loader, config, epoch: int):
        self.loader = loader
        n = loader.sample_size
        order = None
        if loader.shuffle:
            g = torch.Generator().manual_seed(int(config["seed"]) * 100003 + int(epoch))
            order = torch.randperm(n, generator=g).numpy()
        self.batches = shard_batches(n, int(config["train_batch_size"]), dist.get_world_size(),
                                     dist.get_rank(), order)

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        for index in self.batches:
            yield self.loader.collate_fn(index)


def _gather_struct(struct, config):
    """Concatenate the per-user tensors of every rank's evaluation data, in rank order."""
    keys = [k for k in ("rec.topk", "rec.meanrank", "rec.score", "rec.items", "data.label") if k in struct]
    local = {k: struct[k].cpu() for k in keys}
    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, local)
    for k in keys:
        struct.set(k, torch.cat([p[k] for p in parts], dim=0))
    return struct


@torch.no_grad()
def evaluate(trainer, eval_data, load_best_model=True, model_file=None, show_progress=False):
    """Full-ranking evaluation over every user once, the rows split between the ranks.

    Same result as RecBole's single-process ``Trainer.evaluate`` on the same weights: the ranks
    gather the per-user top-k data and each evaluates all of it.
    """
    from recbole.utils import EvaluatorType

    config = trainer.config
    if load_best_model:
        checkpoint_file = model_file or trainer.saved_model_file
        if dist.get_rank() == 0:  # the only process that wrote it
            from .checkpoint import load_weights
            from .compat import load_checkpoint

            load_weights(trainer.model, load_checkpoint(checkpoint_file, map_location=trainer.device), checkpoint_file)
            trainer.logger.info(f"Loading model structure and parameters from {checkpoint_file}")
        for tensor in trainer.model.state_dict().values():
            dist.broadcast(tensor, src=0)
    trainer.model.eval()
    if trainer.item_tensor is None:
        trainer.item_tensor = eval_data._dataset.get_item_feature().to(trainer.device)
    if config["eval_type"] == EvaluatorType.RANKING:
        trainer.tot_item_num = eval_data._dataset.item_num
    block = np.array_split(np.arange(eval_data.sample_size), dist.get_world_size())[dist.get_rank()]
    step = max(1, int(config["eval_batch_size"]))
    for start in range(0, len(block), step):
        batched = eval_data.collate_fn(block[start:start + step])
        interaction, scores, positive_u, positive_i = trainer._full_sort_batch_eval(batched)
        trainer.eval_collector.eval_batch_collect(scores, interaction, positive_u, positive_i)
    trainer.eval_collector.model_collect(trainer.model)
    struct = _gather_struct(trainer.eval_collector.get_data_struct(), config)
    result = trainer.evaluator.evaluate(struct)
    trainer.wandblogger.log_eval_metrics(result, head="eval")
    return result
