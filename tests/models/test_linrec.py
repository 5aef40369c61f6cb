"""LinRec: padding invariance, causal incremental inference == full forward, learning, drop-in use."""
import pytest
import torch

from conftest import build_model
from test_lrurec import _batch, train_and_recall_synthetic


@pytest.mark.parametrize("causal", [False, True])
def test_padding_invariance(causal):
    torch.manual_seed(0)
    m = build_model("LinRec", n_items=30, causal=causal).double().eval()
    seqs = [[3, 4, 5], [7], [1, 2, 3, 4, 5, 6, 7]]
    a = m.full_sort_predict(_batch(seqs, 8))
    b = m.full_sort_predict(_batch(seqs, 20))
    assert torch.allclose(a, b, atol=1e-12, rtol=0)


def test_unmasked_reference_mode_depends_on_padding():
    """linrec_mask_padding: False reproduces the public code, where padding takes part."""
    torch.manual_seed(0)
    m = build_model("LinRec", n_items=30, linrec_mask_padding=False).double().eval()
    seqs = [[3, 4, 5]]
    assert not torch.allclose(m.full_sort_predict(_batch(seqs, 8)), m.full_sort_predict(_batch(seqs, 20)))


def test_step_equals_full_forward_float64():
    torch.manual_seed(0)
    m = build_model("LinRec", n_items=30, causal=True).double().eval()
    seqs = [[3, 4, 5, 9, 11], [7, 2, 6, 6, 1]]
    state = m.init_state(2)
    for t in range(5):
        scores, state = m.step(torch.tensor([s[t] for s in seqs]), state)
        full = m.full_sort_predict(_batch([s[: t + 1] for s in seqs], 12))
        assert (scores - full).abs().max() <= 1e-9
    hist = m.encode_history(_batch([s[:3] for s in seqs], 7)["item_id_list"], torch.tensor([3, 3]))
    scores, _ = m.step(torch.tensor([s[3] for s in seqs]), hist)
    assert (scores - m.full_sort_predict(_batch([s[:4] for s in seqs], 7))).abs().max() <= 1e-9


def test_non_causal_refuses_step_and_whole_sequence():
    m = build_model("LinRec", n_items=30)
    with pytest.raises(RuntimeError, match="causal"):
        m.init_state(1)
    with pytest.raises(ValueError, match="causal: True"):
        build_model("LinRec", n_items=30, train_mode="whole_sequence")


def test_no_quadratic_mask(monkeypatch):
    """The encoder never builds an N x N attention mask."""
    m = build_model("LinRec", n_items=30)
    called = []
    monkeypatch.setattr(m, "get_attention_mask", lambda *a, **k: called.append(1))
    m.full_sort_predict(_batch([[1, 2, 3]], 6))
    assert not called


def test_finite_grads_with_all_padding_row():
    torch.manual_seed(0)
    m = build_model("LinRec", n_items=30, causal=True, train_mode="whole_sequence")
    batch = _batch([[3, 4, 5], [7]], 6, targets=[6, 9])
    batch["item_id_list"][1] = 0  # a row that is all padding at the inputs
    m.trm_encoder(torch.zeros(2, 6, 16), (batch["item_id_list"] > 0).view(2, 1, 1, 6))
    loss = m.calculate_loss(batch)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


@pytest.mark.slow
def test_learns_synthetic_task_whole_sequence():
    torch.manual_seed(0)
    n_items, L = 25, 12
    m = build_model("LinRec", n_items=n_items, hidden_size=32, n_heads=2, inner_size=64,
                    hidden_dropout_prob=0.0, attn_dropout_prob=0.0, causal=True,
                    train_mode="whole_sequence", MAX_ITEM_LIST_LENGTH=L)
    opt = torch.optim.Adam(m.parameters(), lr=5e-3)
    recall = train_and_recall_synthetic(m, opt, n_items, L)
    assert recall >= 0.9, recall


def test_drop_in_attention_for_sasrec(tiny_data):
    """use_linrec_attention swaps the attention of RecBole's own SASRec; it still trains."""
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.layers import MultiHeadAttention
    from recbole.model.sequential_recommender import SASRec

    from recbole_lru.layers import LinRecMultiHeadAttention, use_linrec_attention

    config = Config(model="SASRec", dataset="tiny", config_dict={**tiny_data, "train_neg_sample_args": None})
    train, _, _ = data_preparation(config, create_dataset(config))
    model = SASRec(config, train.dataset)
    assert use_linrec_attention(model, causal=True) == config["n_layers"]
    assert not any(isinstance(mod, MultiHeadAttention) for mod in model.modules())
    assert any(isinstance(mod, LinRecMultiHeadAttention) for mod in model.modules())
    loss = model.calculate_loss(next(iter(train)))
    loss.backward()
    assert torch.isfinite(loss)
