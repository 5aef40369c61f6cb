"""Command line of ``run_recbole_lru.py``: RecBole's ``run_recbole.py`` flags, any ``--key=value``
config override, ``--params_file`` for tuning and ``--resume`` for interrupted runs.

Errors a user can fix (unknown model, missing dataset, bad config, bad data, unsafe checkpoint,
non-finite loss) are printed as one line and exit with status 2 (set RECBOLE_LRU_DEBUG=1 for the
traceback); an interrupted run (Ctrl-C) exits with status 130 and names the checkpoint to resume.
"""
from __future__ import annotations

import argparse
import os
import sys

__all__ = ["main", "USER_ERRORS"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_recbole_lru.py",
        description="Train and evaluate LRURec, LinRec or any RecBole model. "
                    "Extra --key=value options override the config (e.g. --epochs=50).",
    )
    p.add_argument("--model", "-m", default="LRURec", help="model name (LRURec, LinRec, SASRec, ...)")
    p.add_argument("--dataset", "-d", default="ml-100k", help="dataset name")
    p.add_argument("--config_files", default=None, help="config files, separated by spaces")
    p.add_argument("--nproc", type=int, default=1, help="number of processes")
    p.add_argument("--ip", default="localhost", help="master address for distributed runs")
    p.add_argument("--port", default="5678", help="master port for distributed runs")
    p.add_argument("--world_size", type=int, default=-1, help="total processes over all machines")
    p.add_argument("--group_offset", type=int, default=0, help="global rank offset of this machine")
    p.add_argument("--params_file", default=None, help="RecBole hyper-file: run a parameter search")
    p.add_argument("--algo", default="exhaustive", choices=["exhaustive", "random", "bayes"],
                   help="search algorithm for --params_file")
    p.add_argument("--max_evals", type=int, default=None,
                   help="most trials (default: 100 for random/bayes, the whole grid for exhaustive)")
    p.add_argument("--output_file", default=None, help="JSON-lines file of search trials")
    p.add_argument("--tool", default="hyperopt", choices=["hyperopt", "ray"],
                   help="--params_file search: hyperopt (one trial after another) or ray (parallel trials)")
    p.add_argument("--ray_address", default=None, help="Ray cluster for --tool ray: auto or HOST:PORT (default: local)")
    p.add_argument("--num_samples", type=int, default=1, help="trials of --tool ray --algo random")
    p.add_argument("--cpus_per_trial", type=float, default=1, help="CPUs of each Ray trial (its torch threads)")
    p.add_argument("--gpus_per_trial", type=float, default=0, help="GPUs of each Ray trial")
    p.add_argument("--resume", default=None, help="checkpoint (.pth) to resume training from")
    return p


def USER_ERRORS():
    """Exception types that describe a problem the user can fix."""
    from .checkpoint import CheckpointError, UnsafeCheckpointError
    from .quick_start import ConfigFileError
    from .registry import DatasetNotFoundError, ModelNotFoundError
    from .trainer import NonFiniteLossError
    from .validation import DataFormatError

    return (ModelNotFoundError, DatasetNotFoundError, UnsafeCheckpointError, CheckpointError, ConfigFileError,
            NonFiniteLossError, DataFormatError, ValueError, FileNotFoundError, TypeError)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, rest = _parser().parse_known_args(argv)
    try:
        import recbole_lru  # noqa: F401  (registers the models)
        from .compat import keep_freed_memory, quiet_recbole_warnings
        from .quick_start import parse_overrides, run, run_hyper

        keep_freed_memory()
        quiet_recbole_warnings()

        overrides = parse_overrides(rest)
        config_files = args.config_files.strip().split(" ") if args.config_files else None
        # RecBole's Config also reads --key=value from sys.argv, evaluating each value with eval() and
        # ranking it above config_dict: it sees none, so the overrides parsed above (which accept
        # the YAML form {inter: [user_id, item_id]}) are the only reading.
        saved_argv, sys.argv = sys.argv, [sys.argv[0]]
        try:
            if args.params_file and args.tool == "ray":
                from .tune import run_ray

                result = run_ray(args.model, args.dataset, args.params_file, config_files, overrides,
                                 algo=args.algo, num_samples=args.num_samples, output_file=args.output_file,
                                 ray_address=args.ray_address, cpus_per_trial=args.cpus_per_trial,
                                 gpus_per_trial=args.gpus_per_trial)
            elif args.params_file:
                result = run_hyper(args.model, args.dataset, args.params_file, config_files, overrides,
                                   algo=args.algo, max_evals=args.max_evals, output_file=args.output_file)
            else:
                result = run(args.model, args.dataset, config_files, overrides, nproc=args.nproc,
                             world_size=args.world_size, ip=args.ip, port=args.port,
                             group_offset=args.group_offset, resume=args.resume)
        finally:
            sys.argv = saved_argv
    except KeyboardInterrupt as err:
        resume = getattr(err, "resume_file", None)
        hint = (f" Continue it with --resume={resume}" if resume else
                " No resumable checkpoint was written (the first one is written when an epoch ends).")
        print(f"interrupted.{hint}", file=sys.stderr)
        return 130
    except USER_ERRORS() as err:
        if os.environ.get("RECBOLE_LRU_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    if result is not None:
        print(result)
    return 0
