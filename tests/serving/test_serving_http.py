"""The HTTP service through real uvicorn servers on 127.0.0.1 (``python -m recbole_lru.serve``):
the route contract, 4xx errors that name the problem with nothing half-applied, a kill -9 and a
restart on the same SQLite file, and two processes writing one user through one Redis."""
import threading

import httpx
import numpy as np
import pytest

from serving_fixtures import Server, bundle_dir, store_url

from recbole_lru.serving import Recommender, load_bundle

pytestmark = pytest.mark.slow


def offline(events, tmp_path):
    """The uninterrupted in-process run of the same events (float32, as the server)."""
    rec = Recommender(load_bundle(bundle_dir("LRURec")), store=store_url("sqlite", tmp_path))
    for user, items in events:
        rec.observe_many(user, items)
    return rec


def assert_same(http_body, rec_result):
    assert http_body["items"] == rec_result.items
    assert np.allclose(http_body["scores"], rec_result.scores, rtol=1e-6, atol=1e-6)


def test_routes_errors_and_kill9_restart(tmp_path):
    bundle = bundle_dir("LRURec")
    tokens = load_bundle(bundle).tokens
    store = f"sqlite:{tmp_path / 'states.sqlite'}"
    server = Server(bundle, store).wait_ready()
    acked = []  # (user, items) the server acknowledged, in order
    try:
        c = httpx.Client(base_url=server.url, timeout=30)
        assert c.get("/health").json()["model"] == "LRURec"
        for u in range(6):
            items = [tokens[1 + (u + j) % 25] for j in range(1 + u % 3)]
            r = c.post(f"/users/user{u}/interactions", json={"items": items})
            assert r.status_code == 200 and r.json()["applied"] == len(items)
            acked.append((f"user{u}", items))
        r = c.post("/batch/interactions", json={"events": [{"user": "user0", "item": tokens[9]},
                                                           {"user": "user7", "item": tokens[3]}]})
        assert r.json() == {"versions": {"user0": 2, "user7": 1}}
        acked += [("user0", [tokens[9]]), ("user7", [tokens[3]])]
        # integer tokens are accepted as their string
        assert c.post("/users/user8/interactions", json={"items": [int(tokens[4])]}).status_code == 200
        acked.append(("user8", [tokens[4]]))

        # bad input: a 4xx JSON error naming the problem, and nothing applied
        version = c.get("/users/user1").json()["version"]
        for body, needle in [({"items": [tokens[5], "no-such-item"]}, "'no-such-item' at items[1]"),
                             ({"items": []}, "items"), ({"item": [tokens[5]]}, "items: Field required"),
                             ({"items": [1.5]}, "items.0")]:
            r = c.post("/users/user1/interactions", json=body)
            assert r.status_code == 422 and needle in r.json()["detail"], r.json()
        r = c.post("/users/user1/interactions", content=b'{"items": [', headers={"content-type": "application/json"})
        assert r.status_code == 422 and "JSON" in r.json()["detail"]
        r = c.post("/batch/interactions", json={"events": [{"user": "user1", "item": tokens[5]},
                                                           {"user": "user9", "item": "nope"}]})
        assert r.status_code == 422 and "'nope' at events[1]" in r.json()["detail"]
        assert c.get("/users/user1").json()["version"] == version and c.get("/users/user9").json()["version"] == 0
        for k in ("0", str(len(tokens)), "ten"):
            r = c.get("/users/user1/recommendations", params={"k": k})
            assert r.status_code == 422 and "k" in r.json()["detail"], r.json()

        # one round trip: interactions and the recommendations after them; a bad k applies nothing
        r = c.post("/users/user1/interactions", params={"k": len(tokens)}, json={"items": [tokens[6]]})
        assert r.status_code == 422 and "k=" in r.json()["detail"] and c.get("/users/user1").json()["version"] == version
        both = c.post("/users/user10/interactions", params={"k": 6}, json={"items": [tokens[2], tokens[8]]}).json()
        assert both["version"] == 2 and both["applied"] == 2 and len(both["recommendations"]["items"]) == 6
        events = [{"user": "user11", "item": tokens[5]}, {"user": "user0", "item": tokens[7]}]
        batch_both = c.post("/batch/interactions", json={"events": events, "k": 4}).json()
        assert batch_both["versions"] == {"user11": 1, "user0": 3} and [e["user"] for e in batch_both["results"]] == [
            "user11", "user0"]
        acked += [("user10", [tokens[2], tokens[8]]), ("user11", [tokens[5]]), ("user0", [tokens[7]])]

        # answers equal the in-process recommender on the same events
        ref = offline(acked, tmp_path)
        assert_same(both["recommendations"], ref.recommend("user10", k=6))
        for entry in batch_both["results"]:
            assert_same(entry, ref.recommend(entry["user"], k=4))
        for u in ["user0", "user3", "user7", "never-seen"]:
            assert_same(c.get(f"/users/{u}/recommendations", params={"k": 7}).json(), ref.recommend(u, k=7))
        batch = c.post("/batch/recommendations", json={"users": ["user2", "user4"], "k": 5}).json()["results"]
        for entry in batch:
            assert_same(entry, ref.recommend(entry["user"], k=5))

        # kill -9 while a client keeps posting; every acknowledged request must survive
        stop, lock = threading.Event(), threading.Lock()

        def writer():
            j = 0
            with httpx.Client(base_url=server.url, timeout=30) as w:
                while not stop.is_set():
                    items = [tokens[1 + j % 25], tokens[1 + (j + 7) % 25]]
                    try:
                        r = w.post("/users/stream/interactions", json={"items": items})
                    except httpx.TransportError:
                        return  # the server died under this request: not acknowledged
                    if r.status_code == 200:
                        with lock:
                            acked.append(("stream", items))
                    j += 1

        t = threading.Thread(target=writer)
        t.start()
        while sum(u == "stream" for u, _ in acked) < 15:
            stop.wait(0.01)
        server.kill9()
        stop.set()
        t.join()
    finally:
        server.stop()

    server = Server(bundle, store).wait_ready()
    try:
        c = httpx.Client(base_url=server.url, timeout=30)
        stream = sum((items for u, items in acked if u == "stream"), [])
        got = c.get("/users/stream").json()
        # all acknowledged items, in order; at most the one request in flight at the kill on top
        assert got["items"][: len(stream)] == stream and len(got["items"]) - len(stream) in (0, 2)
        events = [e for e in acked if e[0] != "stream"] + [("stream", got["items"])]
        ref = offline(events, tmp_path)
        for u in ["user0", "user5", "user8", "stream"]:
            assert_same(c.get(f"/users/{u}/recommendations", params={"k": 10}).json(), ref.recommend(u, k=10))
    finally:
        server.stop()


def test_a_server_and_another_process_share_one_redis(tmp_path):
    # two processes writing one user at once: a uvicorn server (HTTP clients) and this test
    # process (its own Recommender, its own Redis connection)
    bundle = bundle_dir("LRURec")
    tokens = load_bundle(bundle).tokens
    store = store_url("redis", tmp_path)
    server = Server(bundle, store)
    local = Recommender(load_bundle(bundle), store=store)
    try:
        server.wait_ready()
        errors = []

        def client(w):
            mine = tokens[1 + 8 * w: 9 + 8 * w]
            try:
                if w == 2:
                    for item in mine:
                        local.observe("hot", item)
                    return
                with httpx.Client(base_url=server.url, timeout=30) as c:
                    for item in mine:
                        r = c.post("/users/hot/interactions", json={"items": [item]})
                        assert r.status_code == 200, r.text
            except Exception as err:  # surfaced below
                errors.append(err)

        threads = [threading.Thread(target=client, args=(w,)) for w in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        over_http = httpx.get(server.url + "/users/hot").json()
        assert over_http["version"] == 24 and local.history("hot") == (24, over_http["items"])
        order = over_http["items"]
        for w in range(3):  # each writer's events in its own order
            assert [i for i in order if i in tokens[1 + 8 * w: 9 + 8 * w]] == tokens[1 + 8 * w: 9 + 8 * w]
        ref = offline([("hot", order)], tmp_path)
        assert_same(httpx.get(server.url + "/users/hot/recommendations", params={"k": 10}).json(),
                    ref.recommend("hot", k=10))
        assert local.recommend("hot", k=10).items == ref.recommend("hot", k=10).items
    finally:
        server.stop()
        local.store.clear()
        local.close()
