"""Starting the processes of one machine for a multi-process run, with a timeout and the first
error re-raised in the parent, and :func:`run`: RecBole's pipeline in each process of a group
(``run_recbole_lru.py --nproc``; the mechanics each process uses are :mod:`recbole_lru.distributed`)."""
from __future__ import annotations

import logging
import os
import time

import torch.distributed as dist

from .distributed import DistributedSetupError, install, is_main
from .pipeline import fit_and_test, prepare_data

__all__ = ["launch", "free_port", "run", "distributed_config"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child(local_rank, fn, args, nproc, results):
    import recbole_lru  # noqa: F401  (registers the models in the new process)
    import torch
    import torch.distributed as dist

    install()
    if not os.environ.get("OMP_NUM_THREADS"):
        # N processes with all cores each would oversubscribe the CPU
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // nproc))
    if local_rank != 0:
        logging.getLogger().setLevel(logging.ERROR)
    try:
        results.put((local_rank, "ok", fn(local_rank, *args)))
    except BaseException as err:  # noqa: BLE001  (re-raised in the parent)
        import traceback

        # a note travels with the pickled exception: shown with the parent's traceback, not by the CLI
        err.add_note(f"in process {local_rank}:\n{traceback.format_exc()}")
        try:
            results.put((local_rank, "error", err))
        except Exception:  # an exception that does not pickle
            results.put((local_rank, "error", RuntimeError(f"{type(err).__name__}: {err}")))
        raise SystemExit(1)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def launch(fn, args=(), nproc: int = 2, timeout: float | None = None) -> list:
    """Run ``fn(local_rank, *args)`` in ``nproc`` new processes; returns their results by rank.

    ``fn`` must be importable by name (module level). When a process fails the others are
    stopped and the first exception to arrive is raised here (the others are often only a lost
    connection to the failed process); past ``timeout`` seconds every process is stopped and
    TimeoutError is raised. On Ctrl-C the processes (which got the signal too) have a few seconds
    to report, so that the KeyboardInterrupt raised here names their checkpoint to resume from.
    """
    import torch.multiprocessing as mp
    from torch.multiprocessing.spawn import ProcessException

    results = mp.get_context("spawn").SimpleQueue()
    context = mp.start_processes(_child, args=(fn, tuple(args), nproc, results), nprocs=nproc,
                                 join=False, start_method="spawn")
    got, errors, failure = {}, [], None
    deadline = None if timeout is None else time.monotonic() + timeout

    def drain():
        while not results.empty():
            rank, status, value = results.get()
            got[rank] = value
            if status == "error":
                errors.append(value)

    try:
        while True:
            drain()
            try:
                if context.join(timeout=0.5):
                    break
            except ProcessException as err:
                failure = err
                break
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{nproc} processes did not finish within {timeout:g} s; they were stopped.")
    except KeyboardInterrupt:
        wait_until = time.monotonic() + 10
        while time.monotonic() < wait_until and any(p.is_alive() for p in context.processes):
            drain()
            time.sleep(0.2)
        drain()
        raise next((e for e in errors if isinstance(e, KeyboardInterrupt)), KeyboardInterrupt()) from None
    finally:
        for p in context.processes:
            if p.is_alive():
                p.terminate()
            p.join(5)
    drain()
    if errors:
        raise errors[0]
    if failure is not None:
        raise RuntimeError(f"a training process died without a Python error ({failure}).")
    return [got.get(rank) for rank in range(nproc)]


# --------------------------------------------------------------------------------------------
# One machine's processes of a run
# --------------------------------------------------------------------------------------------
def distributed_config(config_dict, local_rank, nproc, world_size, ip, port, group_offset) -> dict:
    """The keys that make RecBole's Config join a process group (RecBole's names)."""
    return {**(config_dict or {}), "local_rank": local_rank, "nproc": nproc, "world_size": world_size,
            "ip": ip, "port": str(port), "offset": group_offset}


def _pipeline(local_rank, model, dataset, config_file_list, config_dict, saved, resume):
    """RecBole's run_recbole in one process of the group (plus resume); rank 0's result counts."""
    from recbole.config import Config
    from recbole.utils import get_model, get_trainer, init_seed

    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)

    # only the first process of a machine writes a log file
    _, train_data, valid_data, test_data = prepare_data(config, write_log=is_main(config))
    init_seed(config["seed"] + dist.get_rank(), config["reproducibility"])  # own dropout per process
    net = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    if resume:
        trainer.resume_checkpoint(resume)
    return fit_and_test(trainer, config, train_data, valid_data, test_data, saved)


def run(model, dataset, config_file_list=None, config_dict=None, saved=True, nproc=2, world_size=-1,
        ip="localhost", port="5678", group_offset=0, resume=None, timeout=None):
    """``recbole.quick_start.run`` with ``nproc`` processes on this machine, on CPU or GPUs.

    ``world_size`` counts the processes of all machines (default ``nproc``); this machine's
    processes take global ranks ``group_offset .. group_offset + nproc - 1``. Returns the result
    of this machine's first process.
    """
    world_size = nproc if world_size in (None, -1) else int(world_size)
    if nproc < 1 or group_offset < 0 or group_offset + nproc > world_size:
        raise DistributedSetupError(
            f"--nproc={nproc} processes from rank --group_offset={group_offset} do not fit in "
            f"--world_size={world_size}; each machine's offset + nproc must be at most world_size.")
    dicts = [distributed_config(config_dict, r, nproc, world_size, ip, port, group_offset) for r in range(nproc)]
    # every process gets the same arguments; its own dict is picked by local rank
    results = launch(_rank_pipeline, (model, dataset, config_file_list, dicts, saved, resume), nproc, timeout)
    return results[0]


def _rank_pipeline(local_rank, model, dataset, config_file_list, dicts, saved, resume):
    return _pipeline(local_rank, model, dataset, config_file_list, dicts[local_rank], saved, resume)
