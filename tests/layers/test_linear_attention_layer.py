"""LinRecMultiHeadAttention as a drop-in for RecBole's MultiHeadAttention."""
import pytest
import torch
from recbole.model.layers import MultiHeadAttention, TransformerEncoder
from torch import nn

from recbole_lru.layers import LinRecMultiHeadAttention, use_linrec_attention
from recbole_lru.ops.linattn import linear_attention_reference

from helpers import assert_close

N_HEADS, HIDDEN = 2, 8


def recbole_mask(item_seq, bidirectional=False):
    """RecBole's ``SequentialRecommender.get_attention_mask`` (additive, 0 or -10000)."""
    mask = (item_seq != 0).unsqueeze(1).unsqueeze(2)  # [B 1 1 N]
    if not bidirectional:
        mask = torch.tril(mask.expand(-1, -1, item_seq.size(-1), -1))  # [B 1 N N]
    return torch.where(mask, 0.0, -10000.0)


def make_batch(dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    item_seq = torch.tensor(
        [[3, 1, 4, 1, 5, 0, 0], [2, 7, 1, 8, 2, 8, 1], [0, 0, 0, 0, 0, 0, 0], [0, 0, 9, 2, 6, 5, 3]]
    )
    x = torch.randn(*item_seq.shape, HIDDEN, generator=gen, dtype=dtype)
    return x, item_seq, item_seq != 0


def make_pair(**kwargs):
    """A RecBole MultiHeadAttention and a LinRec layer holding the same weights (eval mode)."""
    torch.manual_seed(0)
    softmax = MultiHeadAttention(N_HEADS, HIDDEN, 0.1, 0.1, 1e-12).double().eval()
    linrec = LinRecMultiHeadAttention(N_HEADS, HIDDEN, 0.1, 0.1, 1e-12, **kwargs).double().eval()
    linrec.load_state_dict(softmax.state_dict())
    return softmax, linrec


def expected_output(layer, x, mask, causal):
    """dense + residual + LayerNorm around the materialised reference attention."""
    def heads(t):
        return t.view(*t.shape[:2], N_HEADS, HIDDEN // N_HEADS).transpose(1, 2)

    q, k, v = heads(layer.query(x)), heads(layer.key(x)), heads(layer.value(x))
    ctx = linear_attention_reference(q, k, v, mask=mask, causal=causal)
    ctx = ctx.transpose(1, 2).reshape(x.shape)
    return layer.LayerNorm(layer.dense(ctx) + x)


def test_same_interface_and_state_dict():
    softmax, linrec = make_pair()
    assert list(softmax.state_dict()) == list(linrec.state_dict())
    for key, value in softmax.state_dict().items():
        assert torch.equal(value, linrec.state_dict()[key]), key
    softmax.load_state_dict(linrec.state_dict())  # and back
    x, item_seq, _ = make_batch()
    assert linrec(x, recbole_mask(item_seq)).shape == softmax(x, recbole_mask(item_seq)).shape
    with pytest.raises(ValueError, match="multiple"):
        LinRecMultiHeadAttention(3, HIDDEN, 0.1, 0.1, 1e-12)
    with pytest.raises(ValueError, match="backend"):
        LinRecMultiHeadAttention(N_HEADS, HIDDEN, 0.1, 0.1, 1e-12, backend="fast")


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["tril-mask", "key-mask"])
def test_forward_matches_formula(causal, bidirectional):
    _, linrec = make_pair(causal=causal)
    x, item_seq, real = make_batch()
    out = linrec(x, recbole_mask(item_seq, bidirectional))
    assert_close("masked", expected_output(linrec, x, real, causal), out, 1e-9)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_mask_padding_false_is_public_code(causal):
    """No mask at all: the public LinRec code, where padding takes part."""
    _, linrec = make_pair(mask_padding=False, causal=causal)
    x, item_seq, _ = make_batch()
    out = linrec(x, recbole_mask(item_seq))
    assert_close("unmasked", expected_output(linrec, x, None, causal), out, 1e-9)


def test_padding_mask_from_attention_mask():
    _, item_seq, real = make_batch()
    read = LinRecMultiHeadAttention.padding_mask_from_attention_mask
    assert torch.equal(read(recbole_mask(item_seq)), real)
    assert torch.equal(read(recbole_mask(item_seq, bidirectional=True)), real)
    assert torch.equal(read(real[:, None, None, :]), real)  # bool key mask
    tril = real[:, None, None, :].expand(-1, 1, real.shape[1], -1).tril()
    assert torch.equal(read(tril), real)  # bool lower-triangular mask
    with pytest.raises(ValueError):
        read(torch.zeros(7))


def test_explicit_padding_mask_takes_precedence():
    _, linrec = make_pair()
    x, item_seq, real = make_batch()
    other = real.clone()
    other[1, 3:] = False
    out = linrec(x, recbole_mask(item_seq), padding_mask=other)
    assert_close("explicit", expected_output(linrec, x, other, False), out, 1e-9)
    assert_close("no attention mask", out, linrec(x, None, padding_mask=other), 0)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_padding_invariance(causal):
    _, linrec = make_pair(causal=causal)
    x, item_seq, real = make_batch()
    mask = recbole_mask(item_seq)
    noisy = torch.where(real[..., None], x, 50 * torch.randn_like(x))
    out, out_noisy = linrec(x, mask), linrec(noisy, mask)
    assert_close("real positions", out[real], out_noisy[real], 1e-9)
    _, public = make_pair(mask_padding=False, causal=causal)
    # row 3 is left-padded: its real positions see the padding even in the causal form
    assert not torch.allclose(public(noisy, mask)[3, 2:], public(x, mask)[3, 2:])


def test_causal_future_invariance():
    _, linrec = make_pair(causal=True)
    x, item_seq, _ = make_batch()
    mask = recbole_mask(item_seq)
    changed = x.clone()
    changed[:, 4:] = torch.randn_like(changed[:, 4:])
    assert_close("prefix", linrec(x, mask)[:, :4], linrec(changed, mask)[:, :4], 1e-9)


@pytest.mark.parametrize("mask_padding", [True, False], ids=["mask", "nomask"])
def test_step_equals_causal_forward(mask_padding):
    _, linrec = make_pair(causal=True, mask_padding=mask_padding)
    x, item_seq, real = make_batch()
    full = linrec(x, recbole_mask(item_seq))
    state = linrec.init_state(x.shape[0])
    assert state.shape == (x.shape[0], N_HEADS, HIDDEN // N_HEADS, HIDDEN // N_HEADS)
    assert state.dtype == torch.float64
    outs = []
    for t in range(x.shape[1]):
        out_t, state = linrec.step(x[:, t], state, mask_t=real[:, t])
        outs.append(out_t)
    assert_close("steps", full, torch.stack(outs, dim=1), 1e-9)


def test_attention_dropout_drops_value_tokens():
    torch.manual_seed(0)
    layer = LinRecMultiHeadAttention(N_HEADS, HIDDEN, 0.0, 0.5, 1e-12).double()
    x, item_seq, real = make_batch()
    mask = recbole_mask(item_seq)
    layer.eval()
    reference = layer(x, mask)
    layer.train()
    assert not torch.allclose(layer(x, mask), reference)
    layer.attn_dropout.p = 0.0
    assert_close("p=0 in training", reference, layer(x, mask), 0)


def test_gradients_finite_with_all_padding_row():
    _, linrec = make_pair(causal=True)
    linrec.train()
    x, item_seq, _ = make_batch()
    x.requires_grad_()
    linrec(x, recbole_mask(item_seq)).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in linrec.parameters())


def test_use_linrec_attention_on_module_tree():
    torch.manual_seed(0)
    shared = MultiHeadAttention(N_HEADS, HIDDEN, 0.2, 0.3, 1e-8)
    tree = nn.ModuleDict({
        "encoder": TransformerEncoder(n_layers=2, n_heads=N_HEADS, hidden_size=HIDDEN,
                                      inner_size=16, hidden_dropout_prob=0.2,
                                      attn_dropout_prob=0.3),
        "extra": nn.ModuleList([shared, nn.Linear(HIDDEN, HIDDEN), shared]),
    }).eval()
    before = {k: v.clone() for k, v in tree.state_dict().items()}
    x, item_seq, real = make_batch(dtype=torch.float32)
    mask = recbole_mask(item_seq)

    assert use_linrec_attention(tree, causal=True) == 3
    assert not any(isinstance(m, MultiHeadAttention) for m in tree.modules())
    swapped = [m for m in tree.modules() if isinstance(m, LinRecMultiHeadAttention)]
    assert len(swapped) == 3
    assert tree["extra"][0] is tree["extra"][2]
    assert all(m.causal and m.mask_padding and not m.training for m in swapped)
    layer = tree["encoder"].layer[0].multi_head_attention
    assert layer.attn_dropout.p == 0.3 and layer.out_dropout.p == 0.2
    assert layer.LayerNorm.eps == 1e-12
    assert tree["extra"][0].LayerNorm.eps == 1e-8
    after = tree.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(before[k], after[k]) for k in before)

    out = tree["encoder"](x, mask)[-1]
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert use_linrec_attention(tree) == 0  # nothing left to swap
    with pytest.raises(TypeError):
        use_linrec_attention(MultiHeadAttention(N_HEADS, HIDDEN, 0.1, 0.1, 1e-12))


class _Config(dict):
    def __getitem__(self, key):
        return self.get(key)


class _Dataset:
    def num(self, field):
        return 20


def test_use_linrec_attention_on_sasrec():
    """A real RecBole SASRec: padding becomes irrelevant once LinRec masks it."""
    from recbole.model.sequential_recommender.sasrec import SASRec

    torch.autograd.set_detect_anomaly(False)  # RecBole's sine.py enables it on import
    config = _Config(
        USER_ID_FIELD="user_id", ITEM_ID_FIELD="item_id", LIST_SUFFIX="_list",
        ITEM_LIST_LENGTH_FIELD="item_length", NEG_PREFIX="neg_", MAX_ITEM_LIST_LENGTH=9,
        device="cpu", n_layers=2, n_heads=N_HEADS, hidden_size=HIDDEN, inner_size=16,
        hidden_dropout_prob=0.2, attn_dropout_prob=0.2, hidden_act="gelu", layer_norm_eps=1e-12,
        initializer_range=0.02, loss_type="CE",
    )
    torch.manual_seed(0)
    model = SASRec(config, _Dataset()).eval()
    assert use_linrec_attention(model) == 2
    seq = torch.tensor([[3, 1, 4, 0, 0, 0], [2, 7, 1, 8, 2, 8]])
    lengths = (seq != 0).sum(1)
    longer = torch.cat([seq, torch.zeros(2, 3, dtype=torch.long)], dim=1)
    with torch.no_grad():
        short_out = model(seq, lengths)
        long_out = model(longer, lengths)
    assert short_out.shape == (2, HIDDEN)
    assert_close("extra padding", short_out, long_out, 1e-5)
