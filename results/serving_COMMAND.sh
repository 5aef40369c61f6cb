# Streaming serving benchmark (results/serving.json, results/serving.png): LRURec's state per user vs
# SASRec recomputing from the stored history, Video-size catalogue (23,715 items, d=64), histories of
# 50/200/1000 items, in process (interleaved cells, one thread; one request and 32-user batches) and
# through one uvicorn server on 127.0.0.1 (4 and 1 concurrent clients). Redis cells use the CI server.
# Machine: shared 2-core CPU, torch 2.13 CPU, one torch thread, heavily loaded by other jobs (the
# load average before and after is in the JSON): absolute times are noisy, read the ratios.
OMP_NUM_THREADS=1 python benchmarks/bench_serving.py --out results/serving.json --redis redis://127.0.0.1:6399/0
# The run recorded here wrote to a scratch folder (--out /tmp/.../serving.json); its two files were
# copied to results/. It ran benchmarks/bench_serving.py as of commit 701e951; the next commit moved the
# SASRec baseline class, unchanged, from the script into recbole_lru/serving/recompute.py.
