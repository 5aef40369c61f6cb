#!/usr/bin/env bash
# ml-1m-pos4 (MovieLens-1M ratings >= 4, max length 200: the long-sequence case) under ONE optimisation
# protocol, to early stopping: LRURec, SASRecWS and LinRec (causal, whole sequence), all AdamW lr 1e-3,
# decoupled decay 1e-2 on weight matrices and embeddings only, clipping 5 (--optimizer adamw), dropout 0.2,
# full ranking, history masked, early stopping on validation Recall@10 (patience 10); one thread each.
# Long (hours on a 2-core CPU): the output and the resumable work folders live in OUT, outside the checkout;
# run the same command again after an interruption and each model continues from its last finished epoch.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$HOME/.cache/recbole-lru/runs/ml1m_fair}
COMMON=(--dataset ml-1m-pos4 --data_path ../shared/datasets --mask_history --optimizer adamw --epochs 200
        --stopping_step 10 --threads 1 --hidden_dropout_prob=0.2 --attn_dropout_prob=0.2 --weight_decay=0.01
        --eval_batch_size=1024 --out "$OUT")
python -m recbole_lru.compare "${COMMON[@]}" --models SASRecWS &
python -m recbole_lru.compare "${COMMON[@]}" --models LinRec:whole_sequence &
python -m recbole_lru.compare "${COMMON[@]}" --models LRURec &
wait
mkdir -p results/ml-1m-pos4_fair/ml-1m-pos4
cp "$OUT/ml-1m-pos4/summary.json" results/ml-1m-pos4_fair/ml-1m-pos4/
cp -r "$OUT/ml-1m-pos4/logs" results/ml-1m-pos4_fair/ml-1m-pos4/
python -m recbole_lru.compare.report results/ml-1m-pos4_fair/ml-1m-pos4/summary.json
