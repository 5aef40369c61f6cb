#!/usr/bin/env bash
# LRURec on Video, seed 2020, 3 epochs, one per ce_backend; the three ran side by side (one thread each)
# on a shared 2-core CPU. summary.md comes from the JSON files by the --report line.
set -euo pipefail
cd "$(dirname "$0")/../.."
for b in reference chunked chunked_bf16; do
  OMP_NUM_THREADS=1 python benchmarks/check_ce_accuracy.py --backend $b --epochs 3 --out results/ce_accuracy/LRURec_$b.json &
done
wait
python benchmarks/check_ce_accuracy.py --report results/ce_accuracy > results/ce_accuracy/summary.md
