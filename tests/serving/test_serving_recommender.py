"""The recommender against RecBole's own evaluation, on both stores: replayed observe == history-
masked full_sort_predict (float64, <= 1e-9, same top-k), bootstrapping, batch forms, bad input."""
import numpy as np
import pytest
import torch

from serving_fixtures import bundle_dir, store_url, trained, write_inter

from recbole_lru.serving import Recommender, UnknownItemError, load_bundle
from recbole_lru.serving.engine import make_engine

STORES = ["sqlite", "redis"]
MODELS = ["LRURec", "LinRec"]


@pytest.fixture(params=STORES)
def store_kind(request):
    return request.param


def make_rec(model, store_kind, tmp_path, dtype=torch.float64):
    rec = Recommender(load_bundle(bundle_dir(model), dtype=dtype), store=store_url(store_kind, tmp_path))
    return rec


def scores_vector(rec, r, like):
    """A Recommendation over the whole catalogue -> (n_items,) with -inf where nothing was returned."""
    out = torch.full_like(like, float("-inf"))
    out[[rec.bundle.token2id[i] for i in r.items]] = torch.tensor(r.scores, dtype=like.dtype)
    return out


@pytest.mark.parametrize("model", MODELS)
def test_replayed_observe_equals_masked_full_sort_predict(model, store_kind, tmp_path):
    users, histories, reference = trained(model).reference_scores()
    rec = make_rec(model, store_kind, tmp_path)
    try:
        for u, h in zip(users, histories):
            for item in h:
                rec.observe(u, item)
        worst = 0.0
        for u, h, ref in zip(users, histories, reference):
            assert rec.history(u) == (len(h), h)
            full = rec.recommend(u, k=rec.n_items - 1)
            got = scores_vector(rec, full, ref)
            finite = torch.isfinite(ref)
            assert torch.equal(torch.isfinite(got), finite), "the masked items differ"
            worst = max(worst, (got[finite] - ref[finite]).abs().max().item())
            top = rec.recommend(u, k=10)
            # RecBole's full-sort top-k on the same scores (ties are not expected from trained floats)
            expected = ref.topk(10).indices.tolist()
            assert [rec.bundle.token2id[i] for i in top.items] == expected
            assert top.scores == full.scores[:10]
        assert worst <= 1e-9, worst
    finally:
        rec.store.clear()
        rec.close()


@pytest.mark.parametrize("model", MODELS)
def test_advance_is_step_without_scoring(model):
    bundle = load_bundle(bundle_dir(model), dtype=torch.float64)
    engine, net = make_engine(bundle), bundle.model
    ids = torch.tensor([3, 7, 1])
    state_a, state_b = engine.init_state(3), net.init_state(3)
    with torch.inference_mode():
        for t in range(4):
            hidden, state_a = engine.advance(ids + t, state_a)
            scores, state_b = net.step(ids + t, state_b)
            assert torch.allclose(engine.scores(hidden), scores, rtol=0, atol=1e-12)
    packed = engine.pack(hidden, state_a)
    assert all(len(b) == engine.state_bytes for b in packed)
    h2, s2 = engine.unpack(packed)
    assert torch.equal(h2, hidden)
    assert all(torch.equal(x, y) for x, y in zip(engine.flatten(s2), engine.flatten(state_a)))


@pytest.mark.parametrize("model", MODELS)
def test_bootstrap_equals_replay(model, store_kind, tmp_path):
    tokens = load_bundle(bundle_dir(model)).tokens
    # histories of several lengths, one longer than MAX_ITEM_LIST_LENGTH (10): the state keeps it all
    histories = {f"u{n}": [tokens[1 + (3 * n + i) % (len(tokens) - 1)] for i in range(n)] for n in (1, 2, 5, 14)}
    replayed, booted = make_rec(model, store_kind, tmp_path), make_rec(model, "sqlite", tmp_path)
    try:
        for u, h in histories.items():
            replayed.observe_many(u, h)
        assert booted.bootstrap(histories, batch_size=3) == len(histories)
        for u, h in histories.items():
            assert booted.history(u) == replayed.history(u) == (len(h), h)
            a, b = replayed.recommend(u, k=booted.n_items - 1), booted.recommend(u, k=booted.n_items - 1)
            assert a.items == b.items
            assert np.abs(np.subtract(a.scores, b.scores)).max() <= 1e-9
        # bootstrapping refuses users that already have interactions, and writes none of that batch
        from recbole_lru.serving import ConflictError

        with pytest.raises(ConflictError, match="only fills new users"):
            booted.bootstrap({"fresh": h, "u1": h})
        assert booted.history("fresh") == (0, [])
    finally:
        replayed.store.clear()
        replayed.close()
        booted.close()


def test_bootstrap_inter_file(store_kind, tmp_path):
    rows = [("a", "5", 3.0), ("b", "7", 1.0), ("a", "9", 1.0), ("a", "11", 2.0), ("b", "2", 2.0)]
    folder = write_inter(tmp_path, "hist", rows)
    rec = make_rec("LRURec", store_kind, tmp_path)
    try:
        assert rec.bootstrap_inter_file(f"{folder}/hist/hist.inter") == 2
        assert rec.history("a") == (3, ["9", "11", "5"])  # time order, not file order
        assert rec.history("b") == (2, ["7", "2"])
        with pytest.raises(ValueError, match="no column"):
            rec.bootstrap_inter_file(f"{folder}/hist/hist.inter", time_field="ts")
    finally:
        rec.store.clear()
        rec.close()


def test_new_user_gets_empty_history_recommendations(store_kind, tmp_path):
    rec = make_rec("LRURec", store_kind, tmp_path)
    try:
        net = rec.bundle.model
        with torch.no_grad():
            expected = net.score_all(net.encode_empty(1))[0]
        expected[0] = float("-inf")
        r = rec.recommend("nobody", k=5)
        assert [rec.bundle.token2id[i] for i in r.items] == expected.topk(5).indices.tolist()
        assert np.allclose(r.scores, expected.topk(5).values.numpy(), rtol=0, atol=1e-12)
        assert "[PAD]" not in rec.recommend("nobody", k=rec.n_items - 1).items
        assert rec.history("nobody") == (0, [])  # reading creates nothing
    finally:
        rec.close()


def test_exclude_seen_and_k(store_kind, tmp_path):
    rec = make_rec("LRURec", store_kind, tmp_path)
    try:
        seen = rec.bundle.tokens[1:6]
        rec.observe_many("u", seen)
        everything = rec.recommend("u", k=rec.n_items - 1)
        assert not set(seen) & set(everything.items) and len(everything.items) == rec.n_items - 1 - len(seen)
        assert set(seen) <= set(rec.recommend("u", k=rec.n_items - 1, exclude_seen=False).items)
        assert everything.scores == sorted(everything.scores, reverse=True)
        for bad in (0, -1, rec.n_items, 2.5, "3", True):
            with pytest.raises(ValueError, match=r"k=.* must be an integer in \[1, "):
                rec.recommend("u", k=bad)
    finally:
        rec.store.clear()
        rec.close()


def test_unknown_item_changes_nothing(store_kind, tmp_path):
    rec = make_rec("LRURec", store_kind, tmp_path)
    try:
        good = rec.bundle.tokens[1:4]
        rec.observe_many("u", good)
        before = rec.store.load(["u"])[0]
        with pytest.raises(UnknownItemError, match=r"unknown item token 'nope' at items\[1\]"):
            rec.observe_many("u", [good[0], "nope", good[1]])
        with pytest.raises(UnknownItemError, match=r"'\[PAD\]'"):
            rec.observe("u", "[PAD]")  # the padding token is not an item
        with pytest.raises(UnknownItemError, match=r"at events\[2\]"):
            rec.observe_batch([("v", good[0]), ("u", good[1]), ("w", "nope")])
        assert rec.store.load(["u", "v", "w"]) == [before, None, None]
    finally:
        rec.store.clear()
        rec.close()


@pytest.mark.parametrize("model", MODELS)
def test_batch_forms_equal_one_at_a_time(model, store_kind, tmp_path):
    tokens = load_bundle(bundle_dir(model)).tokens
    events = [("a", tokens[1]), ("b", tokens[2]), ("a", tokens[3]), ("c", tokens[4]), ("a", tokens[5]),
              ("b", tokens[6])]
    batched, single = make_rec(model, store_kind, tmp_path), make_rec(model, "sqlite", tmp_path)
    try:
        batched.observe("a", tokens[7])  # a user with a stored state next to new users
        single.observe("a", tokens[7])
        assert batched.observe_batch(events) == {"a": 4, "b": 2, "c": 1}
        for u, it in events:
            single.observe(u, it)
        users = ["a", "b", "c", "nobody"]
        many = batched.recommend_batch(users, k=8)
        for u, r in zip(users, many):
            one = single.recommend(u, k=8)
            assert r.items == one.items and np.abs(np.subtract(r.scores, one.scores)).max() <= 1e-9
            assert batched.history(u) == single.history(u)
    finally:
        batched.store.clear()
        batched.close()
        single.close()
