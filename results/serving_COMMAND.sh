# Streaming serving benchmark: LRURec's state per user vs SASRec recomputing from the stored
# history, Video-size catalogue (23,715 items, d=64), histories of 50/200/1000 items, in process
# (interleaved cells, one thread; one request and 32-user batches) and through one uvicorn server on
# 127.0.0.1 (micro-batched with 1, 4 and 16 concurrent clients, one request at a time with 4 and 16,
# and the batch routes). Redis cells use the server at redis://127.0.0.1:6399/0.
# Machine: shared 2-core CPU, torch 2.13 CPU, one torch thread, loaded by other jobs (load average
# before and after in each JSON): absolute times are noisy, read the ratios within one run.
#
# Recorded runs (each JSON holds its "commit" and "uncommitted_changes", empty for the serving code):
#   results/serving.json + results/serving.png  at commit ffca0807ba986b1073c89f1fdd746c76ec46dc21
#   results/serving_repeat.json + .png          at commit fcc9b5ae996c40745422f6e6d0359f7080ac1ec8
# Both commits hold the same serving code (recbole_lru/serving, recbole_lru/serve.py and
# benchmarks/bench_serving*.py as of 8f658d7); later commits changed comments and docstrings, and
# when recbole_lru/serve.py (not used by the benchmark) checks --batch_window_ms.
# From the repository root (the diff shows what differs from the recorded runs, if anything):
git diff --stat ffca0807ba986b1073c89f1fdd746c76ec46dc21 -- recbole_lru/serving recbole_lru/serve.py \
    benchmarks/bench_serving.py benchmarks/bench_serving_report.py
OMP_NUM_THREADS=1 python benchmarks/bench_serving.py --out results/serving.json --redis redis://127.0.0.1:6399/0
OMP_NUM_THREADS=1 python benchmarks/bench_serving.py --out results/serving_repeat.json --redis redis://127.0.0.1:6399/0
