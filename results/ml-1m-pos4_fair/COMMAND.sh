#!/usr/bin/env bash
# The rows beside this file were recorded at commit fbfc69a (a clean tree): check it out to reproduce
# them exactly (later commits may train with other fast paths, e.g. SASRecWS's packed encoder).
# ml-1m-pos4 (MovieLens-1M ratings >= 4, max length 200: the long-sequence case) under ONE optimisation
# protocol: SASRecWS, LinRec (causal, whole sequence) and LRURec, all AdamW lr 1e-3, decoupled decay 1e-2
# on weight matrices and embeddings only, clipping 5 (--optimizer adamw), dropout 0.2, full ranking,
# history masked, early stopping on validation Recall@10 (patience 10), one thread, one model after the other.
# Full convergence takes many hours on this 2-core CPU, so each model gets a training budget of
# BUDGET seconds (default 1500): a row that ends at its budget says so (stopped_by: time_budget) and its
# metrics are a lower bound. The output and the resumable work folders live in OUT, outside the checkout:
# run this again with a larger BUDGET (or BUDGET=0 for none) and each budget-stopped model continues from
# its last finished epoch, as if it had never stopped.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$HOME/.cache/recbole-lru/runs/ml1m_fair}
BUDGET=${BUDGET:-1500}
budget=()
if [ "$BUDGET" != 0 ]; then budget=(--time_budget "$BUDGET"); fi
python -m recbole_lru.compare --dataset ml-1m-pos4 --data_path ../shared/datasets --mask_history \
  --optimizer adamw --epochs 200 --stopping_step 10 --threads 1 --hidden_dropout_prob=0.2 \
  --attn_dropout_prob=0.2 --weight_decay=0.01 --eval_batch_size=1024 "${budget[@]}" --out "$OUT" \
  --models SASRecWS,LinRec:whole_sequence,LRURec
mkdir -p results/ml-1m-pos4_fair/ml-1m-pos4
cp "$OUT/ml-1m-pos4/summary.json" results/ml-1m-pos4_fair/ml-1m-pos4/
cp -r "$OUT/ml-1m-pos4/logs" results/ml-1m-pos4_fair/ml-1m-pos4/
python -m recbole_lru.compare.report --portable_logs results/ml-1m-pos4_fair/ml-1m-pos4/summary.json
