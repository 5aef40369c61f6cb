# ARCHIVED (results/archive/README.md): the rows beside this file came from earlier code, mostly from
# uncommitted trees; this records what was run, and rerunning it trains today's code instead.
# ml-100k side by side: leave-one-out, full ranking, history masked, max length 50, Recall@10 early
# stopping (patience 5, at most 40 epochs). Whole-sequence regime for LRURec, LinRec (causal) and SASRecWS;
# RecBole's prefix regime for the zoo models that support only that. GRU4Rec (prefix rows, ~90 s per
# epoch here) is capped at 5 epochs and LinRec at 10 to fit the CPU time available.
python -m recbole_lru.compare --dataset ml-100k --models LRURec,SASRecWS,LinRec:whole_sequence,GRU4Rec,FPMC,BPR \
  --mask_history --epochs 40 --stopping_step 5 --threads 2 --out results \
  --model_config GRU4Rec:epochs=5 --model_config LinRec:epochs=10
# The rest of the default zoo, RecBole's prefix regime, 900 s of training each on one thread (beside a Video run
# on the other core): a time budget, so these rows carry time_budget_s in their protocol.
python -m recbole_lru.compare --dataset ml-100k --models NARM,Caser,SASRec,BERT4Rec --mask_history --epochs 40 \
  --stopping_step 5 --threads 1 --time_budget 900 --out results
