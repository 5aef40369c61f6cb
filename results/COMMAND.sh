#!/usr/bin/env bash
# The benchmark files at the top of results/ (each also records its command, commit and machine):
#   efficiency.json, efficiency.md, incremental_inference.png, long_sequences.png  <- benchmarks/efficiency.py
#   scan_benchmark.json                                                             <- benchmarks/bench_scan.py
#   step_benchmark.json                                                             <- benchmarks/bench_step.py
#   linear_attention_benchmark.{json,md}                                            <- benchmarks/bench_linear_attention.py
#   train_modes.json                                                                <- benchmarks/bench_train_modes.py
# scan_benchmark, step_benchmark, linear_attention_benchmark and train_modes were recorded at commit 0287e43
# (a clean tree) one after the other on an otherwise idle machine; efficiency.json records its own commit.
# train_step.json and serving.json have their own scripts (train_step: benchmarks/bench_train_step.py;
# serving: serving_COMMAND.sh). One thread each, one after the other, on the 2-core CPU; times are
# process CPU seconds where the script says so, and every target is a ratio measured side by side in
# one run. efficiency.py reads the comparison summaries of results/*_fair/ for its time-to-best keys.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
python benchmarks/efficiency.py
python benchmarks/bench_scan.py
python benchmarks/bench_step.py
python benchmarks/bench_linear_attention.py
python benchmarks/bench_train_modes.py
