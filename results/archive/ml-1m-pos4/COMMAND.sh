#!/usr/bin/env bash
# ARCHIVED (results/archive/README.md): the rows beside this file came from earlier code, mostly from
# uncommitted trees; this records what was run, and rerunning it trains today's code instead.
# MovieLens-1M (ratings >= 4), max length 200 as the paper's ML-1M; leave-one-out, full ranking, history masked,
# whole-sequence training, dropout 0.2, AdamW weight decay 1e-2; each model gets 2200 s of training time
# (stopping at an epoch boundary) on a shared 2-core CPU, one torch thread, beside another harness run.
set -euo pipefail
cd "$(dirname "$0")/../../.."
python -m recbole_lru.compare --dataset ml-1m-pos4 --data_path ../shared/datasets \
  --models LRURec,SASRecWS --mask_history --epochs 200 --stopping_step 10 --threads 1 --time_budget 2200 \
  --hidden_dropout_prob=0.2 --attn_dropout_prob=0.2 --weight_decay=0.01 --eval_batch_size=1024 --out results
