"""The packed encoder is RecBole's TransformerEncoder at every real position (float64): outputs and
gradients, awkward masks (length 1, odd lengths, batch 1, all-padding rows, holes), every activation,
and attention dropout applied as RecBole's (to the softmax weights)."""
import pytest
import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.model.layers import TransformerEncoder

from helpers import assert_close
from recbole_lru.layers.packed_transformer import packed_attention, packed_encoder, packed_layout

TIGHT = dict(rtol=1e-10, atol=1e-12)


def _encoder(act="gelu", p=0.0, D=8, heads=2, inner=12, n_layers=2):
    torch.manual_seed(0)
    enc = TransformerEncoder(n_layers=n_layers, n_heads=heads, hidden_size=D, inner_size=inner,
                             hidden_dropout_prob=p, attn_dropout_prob=p, hidden_act=act).double()
    for prm in enc.parameters():  # off RecBole's init so biases and LayerNorm matter
        prm.data.normal_(0, 0.3)
    return enc


def _real(lengths, L):
    return torch.arange(L)[None, :] < torch.as_tensor(lengths)[:, None]


def _both(enc, x, real, act="gelu"):
    """(RecBole's outputs at real positions, packed outputs in the same order)."""
    mask = SequentialRecommender.get_attention_mask(None, real.long())  # RecBole's -10000 extended mask
    ref = enc(x, mask, output_all_encoded_layers=True)[-1]
    layout = packed_layout(real)
    got = packed_encoder(enc, x.reshape(-1, x.size(-1))[layout.index], layout, act)
    B, L, D = x.shape
    full = got.new_zeros(B * L, D).index_copy(0, layout.index, got).view(B, L, D)
    return ref[real], full[real], full[~real]


CASES = {
    "awkward lengths": ([1, 7, 0, 13, 2, 5, 13, 3, 9], 13),
    "batch 1 length 1": ([1], 1),
    "batch 1 odd": ([5], 7),
    "almost all padding": ([1, 1, 2, 1], 33),
    "full rows": ([6, 6, 6], 6),
}


@pytest.mark.parametrize("case", list(CASES))
def test_outputs_and_gradients_equal_recbole(case):
    lengths, L = CASES[case]
    enc = _encoder().train()  # train mode with zero dropout: the training graph, deterministic
    real = _real(lengths, L)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(len(lengths), L, 8, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(int(real.sum()), 8, generator=g, dtype=torch.float64)
    grads = []
    for which in (0, 1):
        x.grad = None
        enc.zero_grad()
        ref, got, pad = _both(enc, x, real)
        assert_close(f"{case} outputs", ref, got, **TIGHT)
        assert not pad.any()  # padding positions are never computed
        ((ref, got)[which] * w).sum().backward()
        grads.append([x.grad.clone()] + [prm.grad.clone() for prm in enc.parameters()])
    names = ["input"] + [n for n, _ in enc.named_parameters()]
    for name, ref, got in zip(names, *grads):
        assert_close(f"{case} grad {name}", ref, got, **TIGHT)


@pytest.mark.parametrize("act", ["gelu", "relu", "swish", "tanh", "sigmoid"])
def test_every_activation_in_eval(act):
    enc = _encoder(act=act, p=0.3).eval()  # eval: RecBole's dropout is off, and so is SDPA's
    real = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    ref, got, _ = _both(enc, x, real, act)
    assert_close(act, ref, got, **TIGHT)


def test_holes_follow_recbole_mask():
    """Zeros inside a row (not from RecBole's loader, but its mask's meaning): real tokens still see
    only the real keys at or before them."""
    enc = _encoder(n_layers=1).eval()
    real = torch.tensor([[1, 0, 1, 1, 0, 1], [0, 0, 1, 0, 0, 0]], dtype=torch.bool)
    x = torch.randn(2, 6, 8, dtype=torch.float64)
    ref, got, _ = _both(enc, x, real)
    assert_close("holes", ref, got, **TIGHT)


def test_layout_groups_and_empty_batch():
    real = _real([0, 1, 3, 4, 5, 9, 17, 0], 20)
    layout = packed_layout(real)
    assert layout.index.numel() == int(real.sum())
    assert [b[3] for b in layout.buckets] == [4, 5, 9, 17]  # extents <= 4 together, then powers of two
    assert sum(b[2] for b in layout.buckets) == 6  # the two all-padding rows are dropped
    empty = packed_layout(torch.zeros(3, 4, dtype=torch.bool))
    assert empty.index.numel() == 0 and empty.buckets == []
    enc = _encoder()
    assert packed_encoder(enc, torch.zeros(0, 8, dtype=torch.float64), empty, "gelu").shape == (0, 8)


def test_attention_dropout_is_on_the_softmax_weights():
    """With the same random stream, packed attention in training equals RecBole's order of ops:
    scores / sqrt(d), mask, softmax, dropout (scaled by 1 / (1 - p)), then the weighted values."""
    real = _real([3, 4, 2], 4)  # one group: the grid is the batch
    layout = packed_layout(real)
    (start, stop, rows, width, slot, mask), = layout.buckets
    qkv = torch.randn(int(real.sum()), 3 * 8, dtype=torch.float64)
    torch.manual_seed(5)
    got = packed_attention(qkv, layout, 2, 0.4)
    grid = qkv.new_zeros(rows * width, 24).index_copy(0, slot, qkv)
    q, k, v = grid.view(rows, width, 3, 2, 4).permute(2, 0, 3, 1, 4)
    torch.manual_seed(5)
    probs = ((q @ k.transpose(-1, -2)) / 2.0).masked_fill(~mask, float("-inf")).softmax(-1)
    ref = (F.dropout(probs, 0.4, training=True) @ v).transpose(1, 2).reshape(rows * width, 8)[slot]
    assert_close("attention dropout", ref, got, **TIGHT)
