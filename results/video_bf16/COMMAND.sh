#!/usr/bin/env bash
# The accuracy check of LRURec's bf16 catalogue products (ce_backend: chunked_bf16) to convergence:
# the selected Video configuration of results/video_fair (dropout 0.4, weight decay 1e-2, first-item
# target; AdamW lr 1e-3, decoupled decay on weights and embeddings only, clipping 5; full ranking,
# history masked; early stopping on validation Recall@10, patience 10; seed 2020; one thread), with
# only the cross-entropy's products in bfloat16. Compare with the fp32 row of results/video_fair.
# Output and resumable work folders in OUT, outside the checkout.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$HOME/.cache/recbole-lru/runs/video_bf16}
python -m recbole_lru.compare --dataset amazon-video-games --data_path ../shared/datasets --mask_history \
  --optimizer adamw --epochs 200 --stopping_step 10 --threads 1 --hidden_dropout_prob=0.4 --attn_dropout_prob=0.4 \
  --weight_decay=0.01 --eval_batch_size=2048 --out "$OUT" --models LRURec@bf16 \
  --model_config LRURec@bf16:ce_backend=chunked_bf16
mkdir -p results/video_bf16/amazon-video-games
cp "$OUT/amazon-video-games/summary.json" results/video_bf16/amazon-video-games/
cp -r "$OUT/amazon-video-games/logs" results/video_bf16/amazon-video-games/
python -m recbole_lru.compare.report --portable_logs results/video_bf16/amazon-video-games/summary.json
