"""``python -m recbole_lru.compare``: the command line of :func:`recbole_lru.compare.compare`."""
from __future__ import annotations

import argparse
import shlex
import sys

from ..provenance import portable_paths
from ..quick_start import parse_overrides
from .entries import DEFAULT_MODELS, parse_models
from .optim import LEARNERS
from .run import DEFAULT_OUT, compare

__all__ = ["main", "parser"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m recbole_lru.compare",
        description="Train and evaluate several models on one dataset under one protocol (leave-one-out, "
                    "full ranking, Recall/NDCG/MRR@10,20, shared early stopping); each model in its own "
                    "process. Extra --key=value options override the config of every model.",
    )
    p.add_argument("--dataset", "-d", default="ml-100k", help="dataset name (default ml-100k)")
    p.add_argument("--data_path", default=None,
                   help="folder holding <dataset>/<dataset>.inter (default: RecBole's ./dataset; ml-100k is also "
                        "found in RecBole's own package)")
    p.add_argument("--models", "-m", default=",".join(DEFAULT_MODELS),
                   help="comma-separated models, optionally MODEL:prefix or MODEL:whole_sequence, and MODEL@label "
                        f"for another row of the same model (default {','.join(DEFAULT_MODELS)})")
    p.add_argument("--max_len", type=int, default=None,
                   help="MAX_ITEM_LIST_LENGTH for every model (default: the dataset YAML's)")
    p.add_argument("--epochs", type=int, default=200, help="epoch cap (default 200)")
    p.add_argument("--stopping_step", type=int, default=10, help="early-stopping patience in validations (default 10)")
    p.add_argument("--valid_metric", default="Recall@10", help="early-stopping metric (default Recall@10)")
    p.add_argument("--mask_history", action="store_true",
                   help="remove each user's input items from the full ranking (config mask_history: True)")
    p.add_argument("--optimizer", choices=LEARNERS, default=None,
                   help="one optimizer (RecBole learner) for every model, e.g. adamw as in the LRURec paper "
                        "(default: each model's own YAML)")
    p.add_argument("--model_config", action="append", default=[], metavar="MODEL:key=value",
                   help="config override for one model entry (repeatable; applied after the shared ones)")
    p.add_argument("--out", default=DEFAULT_OUT,
                   help=f"output folder; results go to OUT/<dataset>/, a --quick run's to OUT/quick/<dataset>/ "
                        f"(default ./{DEFAULT_OUT})")
    p.add_argument("--work_dir", default=None,
                   help="where unfinished models keep checkpoints to continue from "
                        "(default: .work/ in the results folder)")
    p.add_argument("--quick", action="store_true", help="a few users and one epoch, to check that everything runs")
    p.add_argument("--quick_users", type=int, default=200, help="users kept by --quick (default 200)")
    p.add_argument("--quick_items", type=int, default=30,
                   help="latest interactions kept per user by --quick (default 30)")
    p.add_argument("--force", action="store_true",
                   help="rerun models that already have a finished row, from scratch")
    p.add_argument("--timeout", type=float, default=None, help="seconds per model before it is killed")
    p.add_argument("--threads", type=int, default=None, help="torch threads in each model's process")
    p.add_argument("--time_budget", type=float, default=None,
                   help="training seconds per model: stop at the last epoch boundary inside it and test the "
                        "best validation weights (recorded as stopped_by: time_budget)")
    p.add_argument("--in_process", action="store_true",
                   help="run every model in this process (debugging; no isolation, no --timeout)")
    p.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    return p


def _portable_arg(arg: str) -> str:
    """A command-line word as the record keeps it, quoted for a shell: ``--out=/home/u/x`` ->
    ``--out=~/x`` (the ``~/`` left unquoted, so that pasting the command expands it)."""
    key, eq, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
    value = portable_paths(value)
    if value.startswith("~/"):
        return shlex.quote(key + eq) + "~/" + shlex.quote(value[2:]) if key else "~/" + shlex.quote(value[2:])
    return shlex.quote(key + eq + value)


def main(argv=None) -> int:
    """Command line; returns 0 when every model finished, 1 when some failed, 2 on bad arguments."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--_worker"] and len(argv) == 2:
        from .worker import worker_main

        return worker_main(argv[1])
    args, rest = parser().parse_known_args(argv)
    try:
        overrides = parse_overrides(rest)
        command = "python -m recbole_lru.compare " + " ".join(_portable_arg(a) for a in argv)
        summary = compare(
            args.dataset, args.models, data_path=args.data_path, out=args.out, max_len=args.max_len,
            epochs=args.epochs, stopping_step=args.stopping_step, valid_metric=args.valid_metric,
            mask_history=args.mask_history, quick=args.quick, quick_users=args.quick_users,
            quick_items=args.quick_items, force=args.force, overrides=overrides, model_configs=args.model_config,
            timeout=args.timeout, threads=args.threads, time_budget=args.time_budget, optimizer=args.optimizer,
            work_dir=args.work_dir, in_process=args.in_process, command=command,
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    entries = {e.name for e in parse_models(args.models)}
    failed = [n for n, row in summary["models"].items() if n in entries and row.get("error")]
    return 1 if failed else 0
