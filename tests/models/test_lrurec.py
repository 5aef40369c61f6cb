"""LRURec: padding invariance, incremental inference == full forward, ablations, and learning."""
import pytest
import torch

from recbole.data.interaction import Interaction

from conftest import build_model


def _batch(seqs, L, targets=None):
    B = len(seqs)
    item_seq = torch.zeros(B, L, dtype=torch.long)
    for i, s in enumerate(seqs):
        item_seq[i, : len(s)] = torch.tensor(s)
    lens = torch.tensor([len(s) for s in seqs])
    d = {"item_id_list": item_seq, "item_length": lens}
    if targets is not None:
        d["item_id"] = torch.tensor(targets)
    return Interaction(d)


@pytest.fixture
def model64():
    torch.manual_seed(0)
    return build_model("LRURec", n_items=30, hidden_dropout_prob=0.0).double().eval()


def test_padding_invariance(model64):
    seqs = [[3, 4, 5], [7], [1, 2, 3, 4, 5, 6, 7]]
    a = model64.full_sort_predict(_batch(seqs, 8))
    b = model64.full_sort_predict(_batch(seqs, 20))
    assert torch.allclose(a, b, atol=1e-12, rtol=0)
    ha, _ = model64.encode(_batch(seqs, 8)["item_id_list"], torch.tensor([3, 1, 7]))
    hb, _ = model64.encode(_batch(seqs, 20)["item_id_list"], torch.tensor([3, 1, 7]))
    for i, s in enumerate(seqs):
        assert torch.equal(ha[i, : len(s)], hb[i, : len(s)])


def test_step_equals_full_forward_float64(model64):
    seqs = [[3, 4, 5, 9, 11], [7, 2], [1, 2, 3, 4, 5, 6, 7, 8]]
    state = model64.init_state(3)
    full = model64.full_sort_predict(_batch([[s[0]] for s in seqs], 10))
    history = [[] for _ in seqs]
    steps = max(map(len, seqs))
    for t in range(steps):
        ids = torch.tensor([s[min(t, len(s) - 1)] for s in seqs])
        for h, i in zip(history, ids.tolist()):
            h.append(i)
        scores, state = model64.step(ids, state)
        full = model64.full_sort_predict(_batch(history, 10))
        assert (scores - full).abs().max() <= 1e-9


def test_encode_history_then_step(model64):
    seqs = [[3, 4, 5, 9], [7, 2]]
    lens = torch.tensor([4, 2])
    state = model64.encode_history(_batch(seqs, 6)["item_id_list"], lens)
    scores, _ = model64.step(torch.tensor([12, 13]), state)
    full = model64.full_sort_predict(_batch([s + [x] for s, x in zip(seqs, [12, 13])], 6))
    assert (scores - full).abs().max() <= 1e-9


def test_step_float32_relative(model64):
    m32 = model64.float()
    seqs = [[3, 4, 5, 9, 11, 2, 8]]
    state = m32.init_state(1)
    for i in seqs[0]:
        scores, state = m32.step(torch.tensor([i]), state)
    full = m32.full_sort_predict(_batch(seqs, 10))
    assert ((scores - full).abs().max() / full.abs().max()) <= 1e-4


def test_step_rejects_bad_item_ids(model64):
    state = model64.init_state(2)
    with pytest.raises(ValueError, match="item ids must be in"):
        model64.step(torch.tensor([0, 3]), state)
    with pytest.raises(ValueError, match="item ids must be in"):
        model64.step(torch.tensor([3, 30]), state)


@pytest.mark.parametrize("switch", ["use_layer_norm", "use_residual", "use_pffn"])
@pytest.mark.parametrize("mode", ["prefix", "whole_sequence"])
def test_ablations_build_and_train(switch, mode):
    torch.manual_seed(0)
    m = build_model("LRURec", n_items=30, train_mode=mode, **{switch: False})
    batch = _batch([[3, 4, 5], [7, 8]], 6, targets=[6, 9])
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    first = None
    for _ in range(5):
        opt.zero_grad()
        loss = m.calculate_loss(batch)
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert torch.isfinite(loss) and loss.item() < first


def test_bpr_loss_both_modes():
    torch.manual_seed(0)
    for mode in ("prefix", "whole_sequence"):
        m = build_model("LRURec", n_items=30, train_mode=mode, loss_type="BPR")
        batch = _batch([[3, 4, 5], [7, 8]], 6, targets=[6, 9])
        batch.update(Interaction({"neg_item_id": torch.tensor([1, 2])}))
        loss = m.calculate_loss(batch)
        loss.backward()
        assert torch.isfinite(loss)


@pytest.mark.parametrize("bad", [
    {"hidden_dropout_prob": 1.0}, {"hidden_dropout_prob": -0.1}, {"hidden_size": 0}, {"n_layers": 0},
    {"MAX_ITEM_LIST_LENGTH": 0}, {"train_mode": "bogus"}, {"r_min": 0.99, "r_max": 0.8},
])
def test_config_errors(bad):
    with pytest.raises(ValueError, match="Invalid LRURec config"):
        build_model("LRURec", **bad)


def _synthetic(n_seqs, L, n_items, seed):
    """Sequences where item t = f(item t-1, item t-2): the next item is determined by the last two."""
    g = torch.Generator().manual_seed(seed)
    seqs = torch.zeros(n_seqs, L + 1, dtype=torch.long)
    seqs[:, :2] = torch.randint(1, n_items, (n_seqs, 2), generator=g)
    for t in range(2, L + 1):
        seqs[:, t] = (3 * seqs[:, t - 1] + 5 * seqs[:, t - 2]) % (n_items - 1) + 1
    return seqs


def train_and_recall_synthetic(m, opt, n_items, L, epochs=30):
    """Train ``m`` whole-sequence on the synthetic task (varied lengths, right padding) and return
    its Recall@10 for the next item on held-out sequences."""
    train = _synthetic(512, L, n_items, seed=1)
    test = _synthetic(256, L, n_items, seed=2)
    for epoch in range(epochs):
        for i in range(0, len(train), 64):
            s = train[i: i + 64]
            lens = torch.randint(2, L + 1, (len(s),))
            seq = s[:, :L].clone()
            seq[torch.arange(L)[None, :] >= lens[:, None]] = 0
            batch = Interaction({"item_id_list": seq, "item_length": lens,
                                 "item_id": s.gather(1, lens[:, None]).squeeze(1)})
            opt.zero_grad()
            m.calculate_loss(batch).backward()
            opt.step()
    m.eval()
    with torch.no_grad():
        lens = torch.full((len(test),), L)
        scores = m.full_sort_predict(Interaction({"item_id_list": test[:, :L], "item_length": lens}))
        scores[:, 0] = -float("inf")
        top10 = scores.topk(10, dim=1).indices
        return (top10 == test[:, L:L + 1]).any(1).float().mean().item()


@pytest.mark.slow
def test_learns_synthetic_task_whole_sequence():
    torch.manual_seed(0)
    n_items, L = 25, 12
    m = build_model("LRURec", n_items=n_items, hidden_size=32, hidden_dropout_prob=0.0,
                    train_mode="whole_sequence", MAX_ITEM_LIST_LENGTH=L)
    opt = torch.optim.AdamW(m.optimizer_param_groups(0.0), lr=5e-3)
    recall = train_and_recall_synthetic(m, opt, n_items, L)
    assert recall >= 0.9, recall


def _plain_whole_sequence_loss(m, seqs, targets, L, first_item):
    """Mean CE over every next-item target, written out row by row (and, with ``first_item``, the
    first item of each row shorter than L, scored from the empty-history output)."""
    terms = []
    for s, t in zip(seqs, targets):
        hidden, _ = m.encode(_batch([s], L)["item_id_list"], torch.tensor([len(s)]))
        labels = s[1:] + [t]
        for pos, label in enumerate(labels):
            terms.append(torch.nn.functional.cross_entropy(m.score_all(hidden[0, pos:pos + 1]),
                                                           torch.tensor([label]), reduction="sum"))
        if first_item and len(s) < L:
            terms.append(torch.nn.functional.cross_entropy(m.score_all(m.encode_empty(1)),
                                                           torch.tensor([s[0]]), reduction="sum"))
    return torch.stack(terms).sum() / len(terms)


@pytest.mark.parametrize("first_item", [True, False])
def test_whole_sequence_loss_matches_plain_sum(first_item):
    torch.manual_seed(0)
    L = 6
    m = build_model("LRURec", n_items=30, hidden_dropout_prob=0.0, train_mode="whole_sequence",
                    first_item_target=first_item, MAX_ITEM_LIST_LENGTH=L).double()
    # a full-length row (truncated history: no first-item target), length 1, odd lengths
    seqs, targets = [[3, 4, 5], [7], [1, 2, 3, 4, 5, 6], [9, 8, 7, 6, 5]], [6, 9, 11, 2]
    loss = m.calculate_loss(_batch(seqs, L, targets=targets))
    expected = _plain_whole_sequence_loss(m, seqs, targets, L, first_item)
    assert torch.allclose(loss, expected, atol=1e-12, rtol=0)


def test_first_item_target_trains_the_start_input():
    torch.manual_seed(0)
    on = build_model("LRURec", n_items=30, train_mode="whole_sequence", first_item_target=True)
    off = build_model("LRURec", n_items=30, train_mode="whole_sequence", first_item_target=False)
    prefix = build_model("LRURec", n_items=30, train_mode="prefix", first_item_target=True)
    assert on.first_item_target and not off.first_item_target and not prefix.first_item_target
    # the empty-history output reads id 0 as a learned input with the target on, as frozen padding without
    # a fixed random read-out: the output ends in a LayerNorm, whose plain sum (or sum of squares)
    # has no gradient at all
    readout = torch.randn(on.hidden_size, generator=torch.Generator().manual_seed(0))
    for m in (on, off):
        (m.encode_empty(2) @ readout).sum().backward()
    assert on.item_embedding.weight.grad[0].abs().sum() > 0
    assert off.item_embedding.weight.grad[0].abs().sum() == 0
    # and the target adds one term per whole-history row: the loss changes
    batch = _batch([[3, 4, 5], [7]], 6, targets=[6, 9])
    off.load_state_dict(on.state_dict())
    on.eval(), off.eval()
    assert not torch.allclose(on.calculate_loss(batch), off.calculate_loss(batch))


def test_encode_empty_is_one_step_from_zero_state(model64):
    # the empty-history output is the start input's step from the zero state, for any batch size
    x = model64.embed(torch.zeros(3, dtype=torch.long))
    for block, h in zip(model64.blocks, model64.init_state(3)):
        y, _ = block.lru.step(x, h)
        x = block.ffn(y)
    assert torch.allclose(model64.encode_empty(3), x, atol=1e-12, rtol=0)
    assert torch.allclose(model64.encode_empty(1), x[:1], atol=1e-12, rtol=0)


def test_first_item_target_learns_where_histories_start():
    # every history starts with item 5: only the first-item target can teach the empty-history scores that
    torch.manual_seed(0)
    L = 8
    scores = {}
    for on in (True, False):
        torch.manual_seed(0)
        m = build_model("LRURec", n_items=30, hidden_dropout_prob=0.0, train_mode="whole_sequence",
                        first_item_target=on, MAX_ITEM_LIST_LENGTH=L)
        opt = torch.optim.Adam(m.parameters(), lr=1e-2)
        g = torch.Generator().manual_seed(1)
        for _ in range(40):
            seqs = [[5] + torch.randint(6, 30, (int(n),), generator=g).tolist()
                    for n in torch.randint(1, L - 1, (16,), generator=g)]
            targets = torch.randint(6, 30, (16,), generator=g).tolist()
            opt.zero_grad()
            m.calculate_loss(_batch(seqs, L, targets=targets)).backward()
            opt.step()
        m.eval()
        with torch.no_grad():
            scores[on] = m.score_all(m.encode_empty(1))[0, 1:]
    assert scores[True].argmax().item() + 1 == 5
    assert scores[False].argmax().item() + 1 != 5  # item 5 is never a next-item label
