# Streaming serving benchmark: LRURec's state per user vs SASRec recomputing from the stored
# history, Video-size catalogue (23,715 items, d=64), histories of 50/200/1000 items, in process
# (interleaved cells, one thread; one request, 32-user calls, 32-user one-call
# observe_and_recommend_batch, and 8/64/128-user calls at history 200) and through one uvicorn server on 127.0.0.1 (micro-batched with 1, 4
# and 16 concurrent clients, one request at a time with 4 and 16, the batch routes for 4 x 8 and
# 1 x 32 users, and the interactions routes with k: one request per event). Redis cells use the
# server at redis://127.0.0.1:6399/0.
# Machine: shared 2-core CPU, torch 2.13 CPU, one torch thread (load average before and after in
# each JSON): absolute times are noisy, read the ratios within one run.
#
# Recorded runs, both at commit 21811a54c8d1f50ed915808e3543261bc9e48fe5 (clean: each JSON's
# "uncommitted_changes" is empty):
#   results/serving.json + results/serving.png
#   results/serving_repeat.json + results/serving_repeat.png
# The README's table: python benchmarks/bench_serving_report.py results/serving.json
# From the repository root (the diff shows what differs from the recorded runs, if anything):
git diff --stat 21811a54c8d1f50ed915808e3543261bc9e48fe5 -- recbole_lru/serving recbole_lru/serve.py \
    benchmarks/bench_serving.py benchmarks/bench_serving_http.py benchmarks/bench_serving_report.py
OMP_NUM_THREADS=1 python benchmarks/bench_serving.py --out results/serving.json --redis redis://127.0.0.1:6399/0
OMP_NUM_THREADS=1 python benchmarks/bench_serving.py --out results/serving_repeat.json --redis redis://127.0.0.1:6399/0
