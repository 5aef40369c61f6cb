"""Helpers of the serving tests: tiny models trained in-process by RecBole's own pipeline, their
bundles, a real Redis server, and real uvicorn servers started as subprocesses.

Trained models are cached per test process (training takes about a second each), each in its own
temporary folder, removed at exit.
"""
from __future__ import annotations

import atexit
import functools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import numpy as np
import pytest
import torch

from conftest import tiny_rows, write_inter

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_ROOT = tempfile.mkdtemp(prefix="recbole_lru_serving_tests_")
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)

MODEL_CONFIGS = {
    "LRURec": {"train_mode": "whole_sequence"},
    "LinRec": {"causal": True, "train_mode": "whole_sequence"},
    "SASRec": {},
    "LinRec-noncausal": {"causal": False},
}


class Trained:
    """A model trained on the tiny dataset: its checkpoint, RecBole config, dataset, test loader
    and trainer (whose ``_full_sort_batch_eval`` is RecBole's evaluation with ``mask_history``)."""

    def __init__(self, key, folder):
        from recbole.config import Config
        from recbole.data import create_dataset, data_preparation
        from recbole.utils import get_model, get_trainer, init_seed

        data_path = write_inter(os.path.join(folder, "data"), "tiny", tiny_rows())
        cfg = {
            "data_path": data_path, "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
            "epochs": 1, "train_batch_size": 64, "eval_batch_size": 64, "show_progress": False,
            "checkpoint_dir": os.path.join(folder, "saved"), "hidden_size": 16, "n_heads": 2,
            "inner_size": 32, "MAX_ITEM_LIST_LENGTH": 10, "seed": 2024, "reproducibility": True,
            "metrics": ["Recall", "NDCG"], "topk": [10], "valid_metric": "Recall@10",
            "mask_history": True, "train_neg_sample_args": None, **MODEL_CONFIGS[key],
        }
        model = key.split("-")[0]
        cwd = os.getcwd()
        os.chdir(folder)  # RecBole writes log/ into the working directory
        try:
            self.config = Config(model=model, dataset="tiny", config_dict=cfg)
            init_seed(self.config["seed"], True)
            self.dataset = create_dataset(self.config)
            train, valid, self.test_data = data_preparation(self.config, self.dataset)
            self.net = get_model(model)(self.config, train.dataset)
            self.trainer = get_trainer(self.config["MODEL_TYPE"], model)(self.config, self.net)
            self.trainer.fit(train, valid, saved=True, show_progress=False)
        finally:
            os.chdir(cwd)
        self.model_file = self.trainer.saved_model_file
        self.folder = folder

    def reference_scores(self):
        """RecBole's history-masked full ranking of the test users, run in float64 on the trained
        weights: (raw user tokens, histories as raw item tokens, scores (B, n_items))."""
        from recbole_lru.compat import load_checkpoint

        self.net.load_state_dict(load_checkpoint(self.model_file, map_location="cpu")["state_dict"])
        self.net.double().eval()
        self.trainer.tot_item_num = self.dataset.item_num
        users, histories, scores = [], [], []
        item_tokens = self.dataset.field2id_token[self.config["ITEM_ID_FIELD"]]
        with torch.no_grad():
            for batch in self.test_data:
                interaction, s, _, _ = self.trainer._full_sort_batch_eval(batch)
                uids = interaction[self.config["USER_ID_FIELD"]].tolist()
                seqs, lens = interaction[self.net.ITEM_SEQ], interaction[self.net.ITEM_SEQ_LEN]
                users += [str(self.dataset.id2token(self.config["USER_ID_FIELD"], u)) for u in uids]
                histories += [[str(item_tokens[i]) for i in seq[:n].tolist()] for seq, n in zip(seqs, lens)]
                scores.append(s)
        self.net.float()
        return users, histories, torch.cat(scores)


@functools.lru_cache(maxsize=None)
def trained(key: str) -> Trained:
    """``key``: a model name, or ``LinRec-noncausal``."""
    return Trained(key, tempfile.mkdtemp(prefix=f"{key}_", dir=_ROOT))


@functools.lru_cache(maxsize=None)
def bundle_dir(model: str) -> str:
    from recbole_lru.serving import export_bundle

    t = trained(model)
    return export_bundle(t.model_file, os.path.join(t.folder, "bundle"), dataset=t.dataset)


# ---------------------------------------------------------------------------------- Redis
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@functools.lru_cache(maxsize=None)
def redis_base_url() -> str | None:
    """CI's server (``RECBOLE_LRU_TEST_REDIS``), else one started here on a free port, else None."""
    url = os.environ.get("RECBOLE_LRU_TEST_REDIS")
    if url:
        return url
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    atexit.register(lambda: (proc.kill(), proc.wait()))
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            return f"redis://127.0.0.1:{port}/0"
        except redis.ConnectionError:
            time.sleep(0.05)
    return None


def store_url(kind: str, folder) -> str:
    """A fresh, empty store of ``kind`` (sqlite or redis): a new file, or a new key prefix."""
    if kind == "sqlite":
        return f"sqlite:{os.path.join(str(folder), f'states-{uuid.uuid4().hex[:8]}.sqlite')}"
    base = redis_base_url()
    if base is None:
        pytest.skip("no Redis: RECBOLE_LRU_TEST_REDIS is unset and redis-server is not installed")
    return f"{base}?prefix=test-{uuid.uuid4().hex}"


# ---------------------------------------------------------------------------------- uvicorn
class Server:
    """``python -m recbole_lru.serve`` in a subprocess on 127.0.0.1, as a user starts it."""

    def __init__(self, bundle: str, store: str, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "recbole_lru.serve", "--bundle", bundle, "--store", store,
             "--port", str(self.port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait_ready(self, timeout: float = 60.0) -> "Server":
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.proc.stderr.read().decode()}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        raise TimeoutError(f"server on port {self.port} not ready after {timeout} s")

    def kill9(self) -> None:
        self.proc.kill()  # SIGKILL: no shutdown handler runs
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill9()
        self.proc.stderr.close()


def same(a, b, tol=1e-9) -> bool:
    """Two Recommendations: the same items, scores within ``tol``."""
    return a.items == b.items and np.abs(np.subtract(a.scores, b.scores)).max(initial=0.0) <= tol
