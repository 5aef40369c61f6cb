#!/usr/bin/env bash
# ARCHIVED (results/archive/README.md): the rows beside this file came from earlier code, mostly from
# uncommitted trees; this records what was run, and rerunning it trains today's code instead.
# Video, paper protocol, LRURec with dropout 0.4 (paper grid), 1800 s budget; run before first_item_target
# existed (next-item targets only: pass first_item_target=False to reproduce it with today's defaults).
set -euo pipefail
cd "$(dirname "$0")/../../.."
python -m recbole_lru.compare --dataset amazon-video-games --data_path ../shared/datasets --models LRURec@dropout0.4 \
  --mask_history --epochs 200 --stopping_step 10 --threads 1 --time_budget 1800 --hidden_dropout_prob=0.2 \
  --attn_dropout_prob=0.2 --weight_decay=0.01 --eval_batch_size=2048 --out results/archive/video_dropout_sweep \
  --model_config LRURec@dropout0.4:hidden_dropout_prob=0.4 --model_config LRURec@dropout0.4:attn_dropout_prob=0.4 \
  --model_config LRURec@dropout0.4:first_item_target=False
