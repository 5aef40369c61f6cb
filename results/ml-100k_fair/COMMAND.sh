#!/usr/bin/env bash
# The rows beside this file were recorded at commit 0c89969 (a clean tree): check it out to reproduce
# them exactly (later commits may train with other fast paths, e.g. SASRecWS's packed encoder).
# ml-100k (shipped inside RecBole) under ONE optimisation protocol: LRURec, SASRecWS and LinRec (causal,
# whole sequence) with AdamW lr 1e-3 (--optimizer adamw; each model's own YAML decay and clipping,
# recorded per row), and RecBole's GRU4Rec, FPMC and BPR (prefix regime) with the same optimiser;
# leave-one-out, full ranking, history masked, max length 50, early stopping on validation Recall@10
# (patience 5; up to RecBole's 300 epochs, so early stopping ends each run; GRU4Rec, whose prefix rows take
# ~50 s an epoch here, is capped at 5 epochs: its row is a lower bound); one thread, one model
# after the other. Output and resumable work folders in OUT, outside the checkout.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$HOME/.cache/recbole-lru/runs/ml100k_fair}
python -m recbole_lru.compare --dataset ml-100k --models LRURec,SASRecWS,LinRec:whole_sequence,FPMC,BPR,GRU4Rec \
  --optimizer adamw --mask_history --epochs 300 --stopping_step 5 --threads 1 --out "$OUT" \
  --model_config GRU4Rec:epochs=5
mkdir -p results/ml-100k_fair/ml-100k
cp "$OUT/ml-100k/summary.json" results/ml-100k_fair/ml-100k/
cp -r "$OUT/ml-100k/logs" results/ml-100k_fair/ml-100k/
python -m recbole_lru.compare.report --portable_logs results/ml-100k_fair/ml-100k/summary.json
