"""Cost of one training epoch of LRURec on ml-100k in the two training regimes, side by side.

``whole_sequence`` (the paper's: one row per user window, loss at every position) is timed over a
full epoch; ``prefix`` (RecBole's: one row per prefix, loss at the last position) over its first
``--prefix_steps`` batches, scaled to its number of batches (its batches all have the same shape).
Both use batch 128 and one thread. Writes results/train_modes.json.

    python benchmarks/bench_train_modes.py [--prefix_steps 40]
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import recbole_lru  # noqa: E402,F401
from recbole.config import Config  # noqa: E402
from recbole.data import create_dataset, data_preparation  # noqa: E402
from recbole.utils import get_model, init_seed  # noqa: E402


def epoch_time(mode, max_steps=None):
    config = Config(model="LRURec", dataset="ml-100k",
                    config_dict={"train_mode": mode, "train_batch_size": 128, "show_progress": False})
    init_seed(2020, True)
    train, _, _ = data_preparation(config, create_dataset(config))
    model = get_model("LRURec")(config, train.dataset)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    n_batches = len(train)
    steps, start = 0, time.perf_counter()
    for batch in train:
        opt.zero_grad()
        model.calculate_loss(batch).backward()
        opt.step()
        steps += 1
        if max_steps and steps >= max_steps:
            break
    elapsed = time.perf_counter() - start
    return {"rows": len(train.dataset), "batches": n_batches, "timed_batches": steps,
            "seconds_timed": elapsed, "seconds_per_epoch": elapsed / steps * n_batches}


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--prefix_steps", type=int, default=40)
    p.add_argument("--out", default="results/train_modes.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    whole = epoch_time("whole_sequence")
    prefix = epoch_time("prefix", args.prefix_steps)
    ratio = prefix["seconds_per_epoch"] / whole["seconds_per_epoch"]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    out = {"command": "python " + " ".join(sys.argv), "git_commit": commit,
           "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}, 1 thread",
           "whole_sequence": whole, "prefix": prefix, "prefix_over_whole_sequence_epoch_ratio": ratio}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=2)
    print(f"whole_sequence: {whole['rows']} rows, {whole['seconds_per_epoch']:.1f} s/epoch")
    print(f"prefix:         {prefix['rows']} rows, {prefix['seconds_per_epoch']:.1f} s/epoch "
          f"(from {prefix['timed_batches']} of {prefix['batches']} batches)")
    print(f"prefix / whole_sequence epoch cost: {ratio:.1f}x (target >= 20)")


if __name__ == "__main__":
    main()
