#!/usr/bin/env bash
# The rows beside this file were recorded at commit fcc9b5a (a clean tree): check it out to reproduce
# them exactly (later commits may train with other fast paths, e.g. SASRecWS's packed encoder).
# Video, SASRecWS at the paper's dropout for sparse Amazon sets (0.6), everything else as results/video_fair:
# AdamW lr 1e-3, decoupled decay 1e-2 on weight matrices and embeddings only, clipping 5, full ranking,
# history masked, early stopping on validation Recall@10 (patience 10), seed 2020, one thread.
# Long (about an hour and a half on one core): output and resumable work folders live in OUT, outside the
# checkout; run the same command again after an interruption and it continues from its last finished epoch.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$HOME/.cache/recbole-lru/runs/video_sasrec_dropout}
python -m recbole_lru.compare --dataset amazon-video-games --data_path ../shared/datasets --mask_history \
  --optimizer adamw --epochs 200 --stopping_step 10 --threads 1 --hidden_dropout_prob=0.6 --attn_dropout_prob=0.6 \
  --weight_decay=0.01 --eval_batch_size=2048 --out "$OUT" --models SASRecWS
mkdir -p results/video_sasrec_dropout/amazon-video-games
cp "$OUT/amazon-video-games/summary.json" results/video_sasrec_dropout/amazon-video-games/
cp -r "$OUT/amazon-video-games/logs" results/video_sasrec_dropout/amazon-video-games/
python -m recbole_lru.compare.report --portable_logs results/video_sasrec_dropout/amazon-video-games/summary.json
