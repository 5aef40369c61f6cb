"""Server-side micro-batching: a batch of requests gives what the same requests one at a time
give (versions, per-user order, recommendations), a failing request fails alone, and concurrent
clients of a real uvicorn server on 127.0.0.1 get the unbatched path's answers."""
import asyncio
import threading
import time

import httpx
import numpy as np
import pytest
import torch

from serving_fixtures import bundle_dir, free_port, same, store_url

from recbole_lru.serving import ConflictError, Recommendation, Recommender, load_bundle
from recbole_lru.serving.app import create_app
from recbole_lru.serving.batcher import MicroBatcher, _Read, _Write


def make_rec(tmp_path, dtype=torch.float64):
    return Recommender(load_bundle(bundle_dir("LRURec"), dtype=dtype), store=store_url("sqlite", tmp_path))


def test_a_batch_equals_its_requests_one_at_a_time(tmp_path):
    batched, single = make_rec(tmp_path), make_rec(tmp_path)
    t = batched.bundle.tokens
    ops = [_Write(["u"], [1]), _Write(["v", "u", "u"], [2, 3, 4]), _Read(["u", "v"], 5, True),
           _Write(["u"], [5]),  # after a read of u: must not be applied before it
           _Read(["u"], 5, True), _Read(["v", "w"], 3, False)]
    out = MicroBatcher(batched).run(ops)
    assert all(ok for ok, _ in out), out
    assert out[0][1] == {"u": 1} and out[1][1] == {"v": 1, "u": 3} and out[3][1] == {"u": 4}
    single.observe("u", t[1])
    single.observe_batch([("v", t[2]), ("u", t[3]), ("u", t[4])])
    assert all(same(r, single.recommend(u, k=5)) for r, u in zip(out[2][1], ["u", "v"]))
    single.observe("u", t[5])
    assert same(out[4][1][0], single.recommend("u", k=5))
    assert all(same(r, single.recommend(u, k=3, exclude_seen=False)) for r, u in zip(out[5][1], ["v", "w"]))
    assert batched.history("u") == single.history("u")


def test_a_failing_request_fails_alone(tmp_path, monkeypatch):
    rec = make_rec(tmp_path)
    apply = rec.apply_events

    def flaky(users, ids):
        if "bad" in users:
            raise ConflictError("bad is busy")
        return apply(users, ids)

    monkeypatch.setattr(rec, "apply_events", flaky)
    out = MicroBatcher(rec).run([_Write(["a"], [1]), _Write(["bad", "c"], [2, 3]), _Write(["c"], [4])])
    assert out[0] == (True, {"a": 1}) and out[2] == (True, {"c": 1})
    assert not out[1][0] and isinstance(out[1][1], ConflictError)
    assert rec.history("c")[0] == 1 and rec.history("bad") == (0, [])  # nothing of it applied


class ThreadServer:
    """A real uvicorn server on 127.0.0.1 in a thread of this process (no start-up import cost)."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.mark.slow
def test_concurrent_clients_get_the_unbatched_answers(tmp_path):
    rec = make_rec(tmp_path, torch.float32)
    tokens = rec.bundle.tokens
    app = create_app(rec, batch_window_ms=5.0)
    clients, steps = 8, 6
    rng = np.random.default_rng(0)
    plans = {f"user{c}": [[tokens[int(i)] for i in rng.integers(1, len(tokens), 1 + (c + s) % 2)]
                          for s in range(steps)] for c in range(clients)}
    got, errors = {u: [] for u in plans}, []

    def client(user):
        try:
            with httpx.Client(base_url=url, timeout=30) as http:
                for s, items in enumerate(plans[user]):
                    r = http.post(f"/users/{user}/interactions", json={"items": items})
                    assert r.status_code == 200, r.text
                    assert r.json()["version"] == sum(len(x) for x in plans[user][: s + 1])
                    if s == 2:  # one bad request among the batched ones: refused, alone
                        r = http.post(f"/users/{user}/interactions", json={"items": [items[0], "nope"]})
                        assert r.status_code == 422 and "'nope' at items[1]" in r.json()["detail"]
                    r = http.get(f"/users/{user}/recommendations", params={"k": 10})
                    assert r.status_code == 200, r.text
                    got[user].append(r.json())
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    with ThreadServer(app) as url:
        threads = [threading.Thread(target=client, args=(u,)) for u in plans]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        batch = httpx.post(f"{url}/batch/recommendations", json={"users": list(plans), "k": 4}).json()
    assert not errors, errors
    batcher = app.state.batcher
    assert batcher.batches < batcher.requests  # requests were actually coalesced
    offline = make_rec(tmp_path, torch.float32)
    for user, plan in plans.items():
        for items, body in zip(plan, got[user]):
            offline.observe_many(user, items)
            expected = offline.recommend(user, k=10)
            assert body["items"] == expected.items
            assert np.allclose(body["scores"], expected.scores, rtol=0, atol=1e-5)
        assert rec.history(user) == offline.history(user)
    for row in batch["results"]:
        assert row["items"] == offline.recommend(row["user"], k=4).items


def test_the_window_is_validated():
    with pytest.raises(ValueError, match="window_ms"):
        MicroBatcher(None, window_ms=-1)
    assert asyncio.iscoroutinefunction(MicroBatcher.write)


@pytest.mark.parametrize("window", [None, 0.0])  # one request at a time, micro-batched
def test_interactions_with_k_answer_the_recommendations_after_them(tmp_path, window):
    from fastapi.testclient import TestClient

    rec, ref = make_rec(tmp_path), make_rec(tmp_path)
    t = rec.bundle.tokens
    with TestClient(create_app(rec, batch_window_ms=window)) as c:
        body = c.post("/users/u/interactions", params={"k": 5, "exclude_seen": False}, json={"items": t[1:3]}).json()
        ref.observe_many("u", t[1:3])
        assert body["version"] == 2 and same_json(body["recommendations"], ref.recommend("u", k=5, exclude_seen=False))
        events = [{"user": "v", "item": t[4]}, {"user": "u", "item": t[5]}, {"user": "v", "item": t[6]}]
        body = c.post("/batch/interactions", json={"events": events, "k": 3}).json()
        ref.observe_batch([(e["user"], e["item"]) for e in events])
        assert body["versions"] == {"v": 2, "u": 3} and [r["user"] for r in body["results"]] == ["v", "u"]
        assert all(same_json(r, ref.recommend(r["user"], k=3)) for r in body["results"])
        assert "results" not in c.post("/batch/interactions", json={"events": events[:1]}).json()
        r = c.post("/batch/interactions", json={"events": events[:1], "k": 0})
        assert r.status_code == 422 and "k=0" in r.json()["detail"] and rec.history("v")[0] == 3


def same_json(body, r):
    return same(Recommendation(body["items"], body["scores"]), r)


@pytest.mark.parametrize("window", [None, 0.0])
def test_recommendations_failing_after_the_write_still_answer_the_write(tmp_path, window, monkeypatch):
    from fastapi.testclient import TestClient

    from recbole_lru.serving import StoreError

    rec = make_rec(tmp_path)
    t = rec.bundle.tokens

    def gone(*args, **kwargs):
        raise StoreError("the store went away")

    monkeypatch.setattr(rec, "recommend_batch", gone)
    with TestClient(create_app(rec, batch_window_ms=window)) as c:
        r = c.post("/users/u/interactions", params={"k": 5}, json={"items": t[1:3]})
        assert r.status_code == 200 and r.json()["version"] == 2 and r.json()["recommendations"] is None
        assert r.json()["recommendations_error"] == "the store went away"
        r = c.post("/batch/interactions", json={"events": [{"user": "u", "item": t[4]}], "k": 5})
        assert r.json()["versions"] == {"u": 3} and r.json()["results"] is None
    assert rec.history("u")[0] == 3  # applied once each: nothing to resend
