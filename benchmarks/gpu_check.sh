#!/usr/bin/env bash
# The checks that need a CUDA GPU, as one script (about 8 minutes on one H200):
#   1. the Triton kernel tests on CUDA (on a CPU they run only under TRITON_INTERPRET=1);
#   2. both kernels timed against the PyTorch paths, as GB/s against the card's peak;
#   3. LRURec and SASRecWS trained on Video to early stopping under one protocol (the LRURec paper's:
#      AdamW lr 1e-3, weight decay 1e-2, clipping 5, dropout 0.4, full ranking, history masked).
# Everything it writes goes to results/gpu/ (OUT=... to change). Without CUDA it says so and exits 0.
#
#   bash benchmarks/gpu_check.sh            # from the repository root, datasets in ../shared/datasets
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results/gpu}
DATA=${DATA:-../shared/datasets}

if ! python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA device visible to torch; nothing to check on this machine (exit 0)."
  exit 0
fi
mkdir -p "$OUT"
python - "$OUT/device.json" <<'EOF'
import json, sys, torch
p = torch.cuda.get_device_properties(0)
json.dump({"name": p.name, "memory_gib": round(p.total_memory / 2**30, 1), "torch": torch.__version__,
           "cuda": torch.version.cuda}, open(sys.argv[1], "w"), indent=1)
EOF

echo "== 1. Triton kernel tests on CUDA"
env -u TRITON_INTERPRET timeout 150 python -m pytest -q tests/ops/test_triton.py 2>&1 | tee "$OUT/triton_tests.txt"

echo "== 2. kernels against the PyTorch paths (GB/s of the minimum traffic)"
timeout 120 python benchmarks/bench_kernels.py --out "$OUT/kernels_benchmark.json" 2>&1 | tee "$OUT/kernels_benchmark.txt"

echo "== 3. Video to early stopping, LRURec and SASRecWS, one protocol"
[ -f "$DATA/amazon-video-games/amazon-video-games.inter" ] || {
  echo "gpu_check: $DATA/amazon-video-games is missing; set DATA=<folder holding it>"; exit 1; }
timeout 300 python -m recbole_lru.compare --dataset amazon-video-games --data_path "$DATA" --mask_history \
  --models LRURec,SASRecWS --epochs 200 --stopping_step 10 --hidden_dropout_prob=0.4 --attn_dropout_prob=0.4 \
  --weight_decay=0.01 --eval_batch_size=4096 --out "$OUT" 2>&1 | tee "$OUT/video_compare.txt"
echo "gpu_check: done; results in $OUT/"
