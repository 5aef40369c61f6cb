#!/usr/bin/env bash
# The rows beside this file were recorded at commit c75ebca (a clean tree): check it out to reproduce
# them exactly (later commits may train with other fast paths, e.g. SASRecWS's packed encoder).
# Video (the LRURec paper's data) under ONE optimisation protocol, trained to early stopping (no time budget):
# LRURec (the configuration selected in results/amazon-video-games: dropout 0.4, weight decay 1e-2,
# first-item target) and SASRecWS (SASRec trained the same way), both with the paper's optimisation:
# AdamW, lr 1e-3, decoupled decay 1e-2 on weight matrices and embeddings only, gradient clipping 5,
# dropout 0.4, full ranking, history masked, early stopping on validation Recall@10 with patience 10.
# One torch thread per model, the two models side by side on the two cores.
#
# Long: run it in the background. The output and the resumable work folders live outside the checkout
# (OUT, default ~/.cache/recbole-lru/runs/video_fair2): run the same command again after an interruption
# and each model continues from its last finished epoch. A run is resumed only by the commit that started
# it (the config fingerprint must match): started at commit c75ebca (a worktree of it: git worktree add ../runsrc2 c75ebca).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$HOME/.cache/recbole-lru/runs/video_fair2}
COMMON=(--dataset amazon-video-games --data_path ../shared/datasets --mask_history --optimizer adamw --epochs 200
        --stopping_step 10 --threads 1 --hidden_dropout_prob=0.4 --attn_dropout_prob=0.4 --weight_decay=0.01
        --eval_batch_size=2048 --out "$OUT")
python -m recbole_lru.compare "${COMMON[@]}" --models SASRecWS &
python -m recbole_lru.compare "${COMMON[@]}" --models LRURec &
wait
# the finished rows, then the table against the paper (the committed copies have machine paths made
# relative: the dataset folder as ../shared/datasets, the run folder as ~/.cache/...)
mkdir -p results/video_fair/amazon-video-games
cp "$OUT/amazon-video-games/summary.json" results/video_fair/amazon-video-games/
cp -r "$OUT/amazon-video-games/logs" results/video_fair/amazon-video-games/
python -m recbole_lru.compare.report results/video_fair/amazon-video-games/summary.json
# the paper table, with SASRecWS's dropout-0.6 run (results/video_sasrec_dropout/COMMAND.sh) as a second configuration
python benchmarks/paper_table.py --summary results/video_fair/amazon-video-games/summary.json \
  --summary results/video_sasrec_dropout/amazon-video-games/summary.json@dropout0.6
