"""The state stores, one suite for both: compare-and-set semantics, concurrent writers on one user
(both events applied, in the order the store accepted them), isolation between models, SQLite
durability and group commit."""
import os
import threading
import time

import numpy as np
import pytest
import torch

from serving_fixtures import bundle_dir, same, store_url

from recbole_lru.serving import Recommender, StoreError, load_bundle, open_store
from recbole_lru.serving.stores import StateStore, Update

STORES = ["sqlite", "redis"]


@pytest.fixture(params=STORES)
def store_kind(request):
    return request.param


def ids_bytes(*ids):
    return np.asarray(ids, dtype=np.int32).tobytes()


def test_commit_is_compare_and_set_all_or_nothing(store_kind, tmp_path):
    store = open_store(store_url(store_kind, tmp_path))
    store.attach("ns")
    try:
        assert store.load(["a", "b"]) == [None, None]
        assert store.commit([Update("a", 0, 1, b"s1", ids_bytes(3)), Update("b", 0, 2, b"t2", ids_bytes(4, 5))])
        a, b = store.load(["a", "b"])
        assert (a.version, a.state, a.seen, b.version, b.seen) == (1, b"s1", ids_bytes(3), 2, ids_bytes(4, 5))
        # one stale user fails the whole batch: the fresh user's update is not written either
        assert not store.commit([Update("a", 1, 2, b"s2", ids_bytes(6)), Update("b", 1, 3, b"x", ids_bytes(7))])
        assert store.load(["a", "b"]) == [a, b]
        # the seen items are appended, the state replaced
        assert store.commit([Update("a", 1, 3, b"s3", ids_bytes(6, 7))])
        assert store.load(["a"])[0].seen == ids_bytes(3, 6, 7)
        store.clear()
        assert store.load(["a", "b"]) == [None, None]
    finally:
        store.close()


def test_long_histories_append_in_order(store_kind, tmp_path):
    # appends of several sizes across SQLite's 256-id chunks: the seen list is their concatenation
    store = open_store(store_url(store_kind, tmp_path))
    store.attach("ns")
    try:
        expected, version = [], 0
        for size in (1, 255, 1, 300, 256, 7):
            ids = list(range(len(expected) + 1, len(expected) + size + 1))
            assert store.commit([Update("long", version, version + size, b"s", ids_bytes(*ids))])
            expected += ids
            version += size
            assert store.load(["long"])[0] == type(store.load(["long"])[0])(version, b"s", ids_bytes(*expected))
            assert store.load(["long", "nobody"], seen=False) == [type(store.load(["long"])[0])(version, b"s", b""), None]
    finally:
        store.clear()
        store.close()


def test_many_users_per_commit_across_chunks(store_kind, tmp_path):
    # every commit writes many users at once, each at another offset in its chunks
    store = open_store(store_url(store_kind, tmp_path))
    store.attach("ns")
    rng = np.random.default_rng(0)
    users = [f"u{j}" for j in range(40)]
    expected = {u: [] for u in users}
    try:
        for _ in range(6):
            sizes = rng.integers(1, 300, len(users))
            updates = []
            for u, size in zip(users, sizes):
                ids = rng.integers(1, 10**6, size).tolist()
                updates.append(Update(u, len(expected[u]), len(expected[u]) + len(ids), u.encode(), ids_bytes(*ids)))
                expected[u] += ids
            assert store.commit(updates)
        for u, rec in zip(users, store.load(users)):
            assert (rec.version, rec.state, rec.seen) == (len(expected[u]), u.encode(), ids_bytes(*expected[u]))
        with pytest.raises(ValueError, match="one update per user"):
            store.commit([Update("u0", 1, 2, b"x", b""), Update("u0", 1, 2, b"y", b"")])
    finally:
        store.clear()
        store.close()


def test_models_do_not_share_states(store_kind, tmp_path):
    url = store_url(store_kind, tmp_path)
    store = open_store(url)
    store.attach("model-one")
    store.commit([Update("a", 0, 1, b"s", ids_bytes(1))])
    other = open_store(url)
    try:
        if store_kind == "sqlite":  # one file serves one model
            with pytest.raises(StoreError, match="another model"):
                other.attach("model-two")
        else:  # one key space per model
            other.attach("model-two")
            assert other.load(["a"]) == [None]
    finally:
        store.clear()
        store.close()
        other.close()


def test_store_url_errors(tmp_path):
    for url, match in [("postgres://x", "unknown store URL"), ("sqlite:", "names no file"),
                       (f"sqlite:{tmp_path}/a.db?fsync=1", "unknown SQLite store option"),
                       (f"sqlite:{tmp_path}/a.db?group_commit_ms=soon", "milliseconds"),
                       (f"sqlite:{tmp_path}/a.db?checkpoint_ms=soon", "checkpoint_ms='soon'.*milliseconds"),
                       (f"sqlite:{tmp_path}/a.db?checkpoint_ms=-1", "checkpoint_ms=-1.0 must be >= 0"),
                       (f"sqlite:{tmp_path}/a.db?group_commit_ms=nan", "group_commit_ms=nan must be >= 0"),
                       (f"sqlite:{tmp_path}/a.db?synchronous=off", "synchronous"),
                       ("redis://127.0.0.1:1/0", "cannot reach Redis")]:
        with pytest.raises((ValueError, StoreError), match=match):
            open_store(url)


class CutIn(StateStore):
    """A real store that lets another writer commit between this writer's read and its write,
    once: the interleaving that compare-and-set exists for."""

    def __init__(self, inner, cut_in):
        self.inner, self.cut_in, self.url = inner, cut_in, inner.url

    def attach(self, namespace):
        self.inner.attach(namespace)

    def load(self, users, seen=True):
        return self.inner.load(users, seen=seen)

    def commit(self, updates):
        if self.cut_in is not None:
            cut_in, self.cut_in = self.cut_in, None
            cut_in()
        return self.inner.commit(updates)

    def clear(self):
        self.inner.clear()

    def close(self):
        self.inner.close()


def replay_scores(tokens_in_order, tmp_path):
    rec = Recommender(load_bundle(bundle_dir("LRURec"), dtype=torch.float64), store=store_url("sqlite", tmp_path))
    rec.observe_many("u", tokens_in_order)
    return rec.recommend("u", k=rec.n_items - 1)


def test_a_write_that_lost_the_race_is_recomputed(store_kind, tmp_path):
    url = store_url(store_kind, tmp_path)
    bundle = load_bundle(bundle_dir("LRURec"), dtype=torch.float64)
    tokens = bundle.tokens
    first = Recommender(bundle, store=open_store(url))
    second = Recommender(bundle, store=CutIn(open_store(url), lambda: first.observe("u", tokens[2])))
    try:
        first.observe("u", tokens[1])
        # second reads version 1, first commits version 2, second's write is refused and redone
        assert second.observe("u", tokens[3]) == 3
        assert first.history("u") == (3, [tokens[1], tokens[2], tokens[3]])
        expected = replay_scores([tokens[1], tokens[2], tokens[3]], tmp_path)
        got = first.recommend("u", k=bundle.n_items - 1)
        assert same(got, expected)
    finally:
        first.store.clear()
        first.close()
        second.close()


def test_concurrent_writers_on_one_user(store_kind, tmp_path):
    url = store_url(store_kind, tmp_path)
    bundle = load_bundle(bundle_dir("LRURec"), dtype=torch.float64)
    tokens = bundle.tokens
    n_writers, n_events = 4, 6
    # each writer has its own store connection (its own process in production) and its own items
    writers = [Recommender(bundle, store=open_store(url)) for _ in range(n_writers)]
    mine = {w: tokens[1 + w * n_events: 1 + (w + 1) * n_events] for w in range(n_writers)}
    start, errors = threading.Barrier(n_writers), []

    def run(w):
        try:
            start.wait()
            for item in mine[w]:
                writers[w].observe("hot", item)
                writers[w].observe(f"own{w}", item)
        except Exception as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(n_writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors, errors
        version, order = writers[0].history("hot")
        assert version == n_writers * n_events and sorted(order) == sorted(sum(mine.values(), []))
        for w in range(n_writers):  # each writer's events in its own order
            assert [i for i in order if i in mine[w]] == list(mine[w])
            assert writers[0].history(f"own{w}") == (n_events, list(mine[w]))
        # the stored state is the state of the accepted order
        expected = replay_scores(order, tmp_path)
        got = writers[1].recommend("hot", k=bundle.n_items - 1)
        assert same(got, expected)
    finally:
        writers[0].store.clear()
        for w in writers:
            w.close()


@pytest.mark.parametrize("group_commit_ms", [None, 0, 3])
def test_sqlite_acknowledged_writes_are_in_the_file(group_commit_ms, tmp_path):
    path = tmp_path / "states.sqlite"
    query = "" if group_commit_ms is None else f"?group_commit_ms={group_commit_ms}"
    bundle = load_bundle(bundle_dir("LRURec"))
    rec = Recommender(bundle, store=f"sqlite:{path}{query}")
    tokens = bundle.tokens

    def run(w):
        for j in range(5):
            rec.observe(f"user{w}", tokens[1 + (w + j) % 20])
            rec.observe("shared", tokens[1 + w])

    threads = [threading.Thread(target=run, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    before = {u: rec.history(u) for u in ["shared"] + [f"user{w}" for w in range(4)]}
    rec.close()
    # a new process opening the file sees every acknowledged interaction
    reopened = Recommender(load_bundle(bundle_dir("LRURec")), store=f"sqlite:{path}")
    try:
        assert {u: reopened.history(u) for u in before} == before
        assert before["shared"][0] == 20 and all(before[f"user{w}"][0] == 5 for w in range(4))
    finally:
        reopened.close()


@pytest.mark.slow
def test_an_unreachable_store_is_a_503(tmp_path):
    # a Redis server of our own, stopped under a running service: a JSON 503 naming the store
    import shutil
    import subprocess

    from fastapi.testclient import TestClient
    from serving_fixtures import free_port

    from recbole_lru.serving.app import create_app

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import redis

        for _ in range(100):
            try:
                redis.Redis(port=port).ping()
                break
            except redis.ConnectionError:
                threading.Event().wait(0.05)
        rec = Recommender(load_bundle(bundle_dir("LRURec")), store=f"redis://127.0.0.1:{port}/0")
        client = TestClient(create_app(rec))
        item = rec.bundle.tokens[1]
        assert client.post("/users/u/interactions", json={"items": [item]}).status_code == 200
    finally:
        proc.kill()
        proc.wait()
    r = client.get("/users/u/recommendations")
    assert r.status_code == 503 and f"Redis at redis://127.0.0.1:{port}/0 failed" in r.json()["detail"]
    r = client.post("/users/u/interactions", json={"items": [item]})
    assert r.status_code == 503


@pytest.mark.parametrize("checkpoint_ms", [0, 20])
def test_sqlite_checkpoints_run_off_the_commits(checkpoint_ms, tmp_path):
    # ~200 pages of log: below SQLite's own threshold (1000), so only the background thread copies
    # them into the database file; with checkpoint_ms=0 they stay in the log
    path = tmp_path / "states.sqlite"
    store = open_store(f"sqlite:{path}?synchronous=normal&checkpoint_ms={checkpoint_ms}")
    store.attach("ns")
    try:
        start = os.path.getsize(path)
        assert store.commit([Update(f"u{j}", 0, 1, bytes(2300), ids_bytes(j)) for j in range(100)])
        deadline = time.monotonic() + 5
        while checkpoint_ms and os.path.getsize(path) < start + 200_000 and time.monotonic() < deadline:
            time.sleep(0.01)
        grew = os.path.getsize(path) >= start + 200_000
        assert grew == bool(checkpoint_ms), (start, os.path.getsize(path))
        assert [r.version for r in store.load([f"u{j}" for j in range(100)])] == [1] * 100
    finally:
        store.close()
    reopened = open_store(f"sqlite:{path}")
    try:
        assert reopened.load(["u99"])[0].seen == ids_bytes(99)
    finally:
        reopened.close()
