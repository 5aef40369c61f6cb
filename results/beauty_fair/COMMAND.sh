#!/usr/bin/env bash
# The rows beside this file were recorded at commit 442f30d (a clean tree): check it out to reproduce
# them exactly (later commits may train with other fast paths, e.g. SASRecWS's packed encoder).
# Amazon Beauty (S3-Rec's 5-core version) under ONE optimisation protocol, to early stopping (no time budget):
# LRURec and SASRecWS, both AdamW lr 1e-3, decoupled decay 1e-2 on weight matrices and embeddings only,
# clipping 5, dropout 0.2, max length 50, full ranking, history masked, early stopping on validation
# Recall@10 (patience 10). One torch thread per model, the two side by side. Replaces the withdrawn
# SASRecWS row (Adam + coupled L2) of results/superseded/amazon-beauty.
# Resumable: the same command continues each model from its last finished epoch (OUT keeps the work folders).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$HOME/.cache/recbole-lru/runs/beauty_fair}
COMMON=(--dataset amazon-beauty --data_path ../shared/datasets --mask_history --optimizer adamw --epochs 200
        --stopping_step 10 --threads 1 --hidden_dropout_prob=0.2 --attn_dropout_prob=0.2 --weight_decay=0.01
        --eval_batch_size=2048 --out "$OUT")
python -m recbole_lru.compare "${COMMON[@]}" --models SASRecWS &
python -m recbole_lru.compare "${COMMON[@]}" --models LRURec &
wait
mkdir -p results/beauty_fair/amazon-beauty
cp "$OUT/amazon-beauty/summary.json" results/beauty_fair/amazon-beauty/
cp -r "$OUT/amazon-beauty/logs" results/beauty_fair/amazon-beauty/
python -m recbole_lru.compare.report results/beauty_fair/amazon-beauty/summary.json
