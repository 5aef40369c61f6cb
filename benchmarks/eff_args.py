"""What the efficiency claim scripts share: the datasets they are shaped on, their common options,
quick-run sizes and the standalone entry point (one claim -> ``<out>/efficiency_<claim>.json``).
``benchmarks/efficiency.py`` runs several claims into one ``efficiency.json``."""
from __future__ import annotations

import argparse
import os
import sys

import torch

from benchmarks.common import REPO, log, result_header, write_result

DATASETS = {  # name on disk -> (key suffix, catalogue size (items), max length)
    "ml-1m-pos4": ("ml-1m-pos4", 3533, 200),
    "amazon-video-games": ("video", 23715, 50),
}
# subprocess points: one thread, big tensors mmap-ed so that freed memory leaves the process
POINT_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def base_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="tiny sizes, a smoke run")
    p.add_argument("--out", default=os.path.join(REPO, "results"), help="folder for the JSON (and PNG) files")
    p.add_argument("--results-dir", default=os.path.join(REPO, "results"),
                   help="where comparison summaries and linear_attention_benchmark.json are read")
    p.add_argument("--data-path", default=os.path.abspath(os.path.join(REPO, "..", "shared", "datasets")))
    p.add_argument("--repeats", type=int, help="timed repeats per measurement (default 3, quick 1)")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--heads", type=int, default=2, help="attention heads of SASRec / LinRec (RecBole's SASRec: 2)")
    p.add_argument("--train-batch", type=int, default=128, help="rows per training batch (train and floor claims)")
    return p


def finish_args(args, modules) -> None:
    """Quick-run sizes: the shared ones here, each claim's own in its ``quick_defaults``."""
    args.quick_items, args.quick_len = 300, 24
    if args.quick:
        args.repeats = args.repeats or 1
        args.hidden = min(args.hidden, 16)
        args.train_batch = min(args.train_batch, 16)
        for m in modules:
            getattr(m, "quick_defaults", lambda a: None)(args)
    args.repeats = args.repeats or 3


def prepare_process() -> None:
    """One thread; autograd anomaly mode off (RecBole's sine.py switches it on at import)."""
    torch.set_num_threads(1)
    import recbole.model.sequential_recommender  # noqa: F401

    import recbole_lru  # noqa: F401

    torch.autograd.set_detect_anomaly(False)


def claim_main(module, argv=None) -> int:
    """Run one claim module standalone and write ``<out>/efficiency_<claim>.json``."""
    p = base_parser(module.__doc__.split("\n")[0])
    module.add_arguments(p)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    finish_args(args, [module])
    prepare_process()
    if getattr(module, "run_point", None) and module.run_point(args):
        return 0  # a subprocess measurement point, already printed
    out, notes, details = {}, {}, {}
    module.run(args, out, notes, details)
    for key in module.HEADLINE:
        out.setdefault(key, None)
    path = os.path.join(args.out, f"efficiency_{module.CLAIM}.json")
    write_result(path, {**result_header(module.__file__, argv), "quick": args.quick, **out, "notes": notes,
                        "details": details})
    log(module.CLAIM, f"wrote {path}")
    return 0
