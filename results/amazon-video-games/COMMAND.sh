# Paper protocol on Video (LRURec paper Table 3): leave-one-out, full ranking, history masked,
# max length 50, whole-sequence training for LRURec and SASRecWS; dropout 0.6 and weight decay 1e-2
# from the paper's grid for the sparse Amazon sets. Epoch cap and patience sized to this 2-core CPU.
python -m recbole_lru.compare --dataset amazon-video-games --data_path ../shared/datasets \
  --models LRURec,SASRecWS,SASRec --mask_history --epochs 30 --stopping_step 4 --threads 2 \
  --model_config LRURec:hidden_dropout_prob=0.6 --model_config LRURec:weight_decay=0.01 \
  --eval_batch_size=1024 --out results
