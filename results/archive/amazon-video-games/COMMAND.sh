#!/usr/bin/env bash
# ARCHIVED (results/archive/README.md): the rows beside this file came from earlier code, mostly from
# uncommitted trees; this records what was run, and rerunning it trains today's code instead.
# Paper protocol on Video (LRURec paper, Table 3): leave-one-out, full ranking, history masked, max length 50,
# whole-sequence training (one row per user), AdamW weight decay 1e-2. Every model gets the same training-time
# budget (3300 s, stopping at an epoch boundary; early stopping on validation Recall@10, patience 10).
# Run on a shared 2-core CPU with one torch thread per model, two harness processes side by side.
set -euo pipefail
cd "$(dirname "$0")/../../.."
SHARED=(--dataset amazon-video-games --data_path ../shared/datasets --mask_history --epochs 200 --stopping_step 10
        --threads 1 --time_budget 3300 --hidden_dropout_prob=0.2 --attn_dropout_prob=0.2 --weight_decay=0.01
        --eval_batch_size=2048 --out results)
# Steps 1, 2 and 4 ran before LRURec had first_item_target (next-item targets only): with today's defaults, add
# --model_config ENTRY:first_item_target=False to those entries to reproduce them.
# 1. LRURec and SASRec trained the same way (SASRecWS), dropout 0.2 (the reference code's default)
python -m recbole_lru.compare "${SHARED[@]}" --models LRURec,SASRecWS
# 2. LRURec with dropout 0.6 (the paper's choice for the sparse Amazon sets), same protocol, its own row
python -m recbole_lru.compare "${SHARED[@]}" --models LRURec@dropout0.6 \
  --model_config LRURec@dropout0.6:hidden_dropout_prob=0.6 --model_config LRURec@dropout0.6:attn_dropout_prob=0.6
# 4. paper grid cells (weight decay 1e-4), next-item targets only (as rows 1-2; run before first_item_target existed)
python -m recbole_lru.compare "${SHARED[@]}" --models LRURec@dropout0.4_wd1e-4 \
  --model_config LRURec@dropout0.4_wd1e-4:hidden_dropout_prob=0.4 --model_config LRURec@dropout0.4_wd1e-4:attn_dropout_prob=0.4 \
  --model_config LRURec@dropout0.4_wd1e-4:weight_decay=0.0001 --model_config LRURec@dropout0.4_wd1e-4:first_item_target=False
# 5. with the official code's first-item target (first_item_target: True, LRURec's default since), paper's dropout grid
for d in 0.4 0.6 0.2; do
  python -m recbole_lru.compare "${SHARED[@]}" --models LRURec@dropout${d}_first_item \
    --model_config LRURec@dropout${d}_first_item:hidden_dropout_prob=$d --model_config LRURec@dropout${d}_first_item:attn_dropout_prob=$d \
    --model_config LRURec@dropout${d}_first_item:first_item_target=True
done
# 6. the selected configuration (dropout 0.4, first-item target) with two more seeds: repeats, not candidates
for seed in 1 2; do
  L=dropout0.4_first_item_seed$seed
  python -m recbole_lru.compare "${SHARED[@]}" --models LRURec@$L \
    --model_config LRURec@$L:hidden_dropout_prob=0.4 --model_config LRURec@$L:attn_dropout_prob=0.4 \
    --model_config LRURec@$L:first_item_target=True --model_config LRURec@$L:seed=$seed
done
# 7. the table against the paper, with the dropout-0.4 row of results/archive/video_dropout_sweep (its own COMMAND.sh)
python benchmarks/paper_table.py --summary results/archive/amazon-video-games/summary.json \
  --summary results/archive/video_dropout_sweep/amazon-video-games/summary.json
