#!/usr/bin/env bash
# One process x 2 threads vs 2 DDP processes (gloo) x 1 thread, LRURec (paper defaults: whole-sequence training,
# batch 128, lr 1e-3 unchanged), history-masked full ranking; a few epochs only. Run on the shared 2-core CPU
# while other jobs were running (load averages are recorded in the JSON files): the ratios are indicative.
set -euo pipefail
cd "$(dirname "$0")/../.."
python benchmarks/bench_ddp.py --dataset ml-100k --epochs 5 2>&1 | grep -v Warning | tee results/ddp/ml-100k.log
python benchmarks/bench_ddp.py --dataset amazon-video-games --data_path ../shared/datasets --epochs 1 --skip_one_thread \
  2>&1 | grep -v Warning | tee results/ddp/amazon-video-games.log
