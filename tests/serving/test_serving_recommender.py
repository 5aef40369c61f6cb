"""The recommender against RecBole's own evaluation, on both stores: replayed observe == history-
masked full_sort_predict (float64, <= 1e-9, same top-k), bootstrapping, batch forms, bad input."""
import numpy as np
import pytest
import torch

from serving_fixtures import bundle_dir, same, store_url, trained, write_inter

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
            assert same(r, one)
            assert batched.history(u) == single.history(u)
    finally:
        batched.store.clear()
        batched.close()
        single.close()


@pytest.mark.parametrize("model", MODELS + ["SASRec-recompute"])
def test_observe_and_recommend_equals_observe_then_recommend(model, store_kind, tmp_path):
    both, apart = make_any(model, store_kind, tmp_path / "both"), make_any(model, "sqlite", tmp_path / "apart")
    t = both.bundle.tokens
    try:
        for rec in (both, apart):
            rec.observe_many("a", t[1:4])  # a stored user next to new ones
        version, r = both.observe_and_recommend("a", [t[5], t[6]], k=7)
        assert version == apart.observe_many("a", [t[5], t[6]]) == 5
        assert same(r, apart.recommend("a", k=7)) and not set(t[1:7]) & set(r.items)
        events = [("b", t[2]), ("a", t[8]), ("b", t[9]), ("c", t[3])]
        for exclude_seen in (True, False):
            versions, recs = both.observe_and_recommend_batch(events, k=5, exclude_seen=exclude_seen)
            assert versions == apart.observe_batch(events)
            assert all(same(x, apart.recommend(u, k=5, exclude_seen=exclude_seen)) for x, u in zip(recs, "bac"))
        assert both.history("b") == apart.history("b")
        before = both.store.load(["a", "d"])
        with pytest.raises(UnknownItemError, match=r"at events\[1\]"):
            both.observe_and_recommend_batch([("d", t[1]), ("a", "nope")], k=3)
        with pytest.raises(ValueError, match=r"k=0 must be an integer"):
            both.observe_and_recommend("a", [t[1]], k=0)
        with pytest.raises(ValueError, match="events is empty"):
            both.observe_and_recommend_batch([], k=3)
        assert both.store.load(["a", "d"]) == before  # nothing applied
    finally:
        both.store.clear()
        both.close()
        apart.close()


def make_any(model, store_kind, folder):
    """A float64 recommender of ``model``, or the SASRec recompute baseline on the LRURec bundle's items."""
    folder.mkdir()
    if model != "SASRec-recompute":
        return make_rec(model, store_kind, folder)
    from conftest import build_model

    from recbole_lru.serving.recompute import RecomputeRecommender

    tokens = load_bundle(bundle_dir("LRURec")).tokens
    torch.manual_seed(0)
    sasrec = build_model("SASRec", n_items=len(tokens), hidden_dropout_prob=0.0, attn_dropout_prob=0.0).double().eval()
    return RecomputeRecommender(sasrec, "SASRec-test", store_url(store_kind, folder), tokens)
