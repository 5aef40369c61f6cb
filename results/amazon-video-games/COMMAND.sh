# Paper protocol on Video (LRURec paper Table 3): leave-one-out, full ranking, history masked,
# max length 50, whole-sequence training; dropout 0.6 and weight decay 1e-2 (paper grid, sparse Amazon sets).
# One epoch costs ~10 CPU-minutes here (scoring 290k positions against 23,715 items), so this run is
# capped at 5 epochs: a partial-training measurement, not a converged reproduction.
python -m recbole_lru.compare --dataset amazon-video-games --data_path ../shared/datasets \
  --models LRURec --mask_history --epochs 5 --stopping_step 5 --threads 2 \
  --model_config LRURec:hidden_dropout_prob=0.6 --model_config LRURec:weight_decay=0.01 \
  --eval_batch_size=2048 --out results
