"""One process with 2 threads against 2 processes with 1 thread each (DDP over gloo), LRURec.

A third contender, one process with one thread, shows what a thread buys on this machine.

Both contenders train the same model from the same seed with the same global batch
(``train_batch_size``; under DDP each process takes half of every batch) and the same learning rate:
DDP averages the two halves' gradients, so one step moves the weights as one process's step on the
whole batch would (exactly for a loss averaged over rows, up to the token weighting of the two
halves for the whole-sequence loss, which averages over positions). No learning-rate scaling is
needed or applied. Each contender runs in fresh processes; the script prints per-epoch training
and validation seconds, the final metrics and the ratios, and writes ``results/ddp/<dataset>.json``.

    python benchmarks/bench_ddp.py --dataset ml-100k --epochs 5
    python benchmarks/bench_ddp.py --dataset amazon-video-games --data_path ../shared/datasets --epochs 2
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from recbole_lru import launch  # noqa: E402


def fit(local_rank, dicts, threads):
    """One process of a contender: train, validate every epoch, test the final weights."""
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    torch.set_num_threads(threads)
    config = Config(model="LRURec", dataset=dicts[local_rank]["dataset"], config_dict=dicts[local_rank])
    init_seed(config["seed"], config["reproducibility"])
    train, valid, test = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    model = get_model("LRURec")(config, train._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], "LRURec")(config, model)
    seconds = {"train": [], "valid": []}

    def timed(kind, method):  # benchmark bookkeeping only: the trainer itself is unchanged
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            out = method(*args, **kwargs)
            seconds[kind].append(time.perf_counter() - t)
            return out
        return wrapper

    trainer._train_epoch = timed("train", trainer._train_epoch)
    trainer._valid_epoch = timed("valid", trainer._valid_epoch)
    _, last_valid = trainer.fit(train, valid, saved=False, show_progress=False)
    t = time.perf_counter()
    test_result = trainer.evaluate(test, load_best_model=False)
    return {"epoch_seconds": seconds["train"], "valid_seconds": seconds["valid"],
            "test_seconds": time.perf_counter() - t, "train_rows": len(train._dataset),
            "train_steps_per_epoch": -(-len(train._dataset) // config["train_batch_size"]),
            "best_valid": {k: float(v) for k, v in (last_valid or {}).items()},
            "test": {k: float(v) for k, v in test_result.items()}}


def contender(name, nproc, threads, base):
    port = launch.free_port()
    if nproc == 1:
        dicts = [base]  # no local_rank: RecBole's single process
    else:
        dicts = [launch.distributed_config(base, r, nproc, nproc, "127.0.0.1", port, 0) for r in range(nproc)]
    load_before = os.getloadavg()[0]
    t = time.perf_counter()
    result = launch.launch(fit, (dicts, threads), nproc=nproc)[0]
    result.update(name=name, processes=nproc, threads_per_process=threads, wall_seconds=time.perf_counter() - t,
                  load_average_before=load_before, load_average_after=os.getloadavg()[0])
    mean = sum(result["epoch_seconds"]) / len(result["epoch_seconds"])
    print(f"{name:>26}: {mean:8.2f} s/epoch train, {sum(result['valid_seconds']) / len(result['valid_seconds']):7.2f}"
          f" s/validation, test {result['test']}", flush=True)
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="ml-100k")
    p.add_argument("--data_path", default=None)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--train_batch_size", type=int, default=128)
    p.add_argument("--eval_batch_size", type=int, default=1024)
    p.add_argument("--out", default="results/ddp")
    p.add_argument("--skip_one_thread", action="store_true", help="leave out the 1 process x 1 thread contender")
    args = p.parse_args()
    base = {"dataset": args.dataset, "epochs": args.epochs, "train_batch_size": args.train_batch_size,
            "eval_batch_size": args.eval_batch_size, "mask_history": True, "show_progress": False,
            "stopping_step": args.epochs + 1, "seed": 2020, "reproducibility": True, "dist_timeout": 3600,
            "checkpoint_dir": tempfile.mkdtemp(prefix="bench_ddp_")}  # saved=False: stays empty
    if args.data_path:
        base["data_path"] = os.path.abspath(args.data_path)
    print(f"LRURec on {args.dataset}, {args.epochs} epochs, global batch {args.train_batch_size}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}", flush=True)
    one = contender("1 process x 2 threads", 1, 2, base)
    ddp = contender("2 processes x 1 thread", 2, 1, base)
    single = None if args.skip_one_thread else contender("1 process x 1 thread", 1, 1, base)
    e1 = sum(one["epoch_seconds"]) / len(one["epoch_seconds"])
    e2 = sum(ddp["epoch_seconds"]) / len(ddp["epoch_seconds"])
    v1 = sum(one["valid_seconds"]) / len(one["valid_seconds"])
    v2 = sum(ddp["valid_seconds"]) / len(ddp["valid_seconds"])
    ratios = {"train_epoch_speedup": e1 / e2, "validation_speedup": v1 / v2,
              "wall_speedup": one["wall_seconds"] / ddp["wall_seconds"]}
    if single:
        e0 = sum(single["epoch_seconds"]) / len(single["epoch_seconds"])
        ratios.update(train_epoch_speedup_of_ddp_over_one_thread=e0 / e2, train_epoch_speedup_of_two_threads_over_one=e0 / e1)
    print(f"speed-up of 2 processes x 1 thread over 1 process x 2 threads: training epoch {ratios['train_epoch_speedup']:.2f}x,"
          f" validation {ratios['validation_speedup']:.2f}x, whole run {ratios['wall_speedup']:.2f}x", flush=True)
    if single:
        print(f"over 1 process x 1 thread: training epoch {e0 / e2:.2f}x with 2 processes, {e0 / e1:.2f}x with 2 threads",
              flush=True)
    os.makedirs(args.out, exist_ok=True)
    out = {"dataset": args.dataset, "model": "LRURec", "epochs": args.epochs, "global_batch": args.train_batch_size,
           "learning_rate_rule": "unchanged (global batch unchanged, DDP averages gradients)",
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
           "load_average_note": "other jobs shared the 2 cores; see each contender's load averages",
           "contenders": [c for c in (one, ddp, single) if c], "ratios": ratios}
    with open(os.path.join(args.out, f"{args.dataset}.json"), "w") as fh:
        json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
