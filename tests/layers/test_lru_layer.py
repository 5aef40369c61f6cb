"""The LRU layer (paper eq. 5): ring initialisation, gamma, and its three forward forms agreeing
(padded with a mask, packed on the real positions only, one step at a time)."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recbole_lru.layers.lru import LRUBlock, LRULayer

from helpers import assert_close

D, N = 8, 16


def make_layer(seed=0, block=False, **kwargs):
    torch.manual_seed(seed)
    if block:
        layer = LRUBlock(D, N, 4 * D, dropout=0.0, attn_dropout=0.0, layer_norm_eps=1e-12, r_min=0.8,
                         r_max=0.99, max_phase=2 * math.pi)
    else:
        layer = LRULayer(D, N, dropout=0.0, **kwargs)
    return layer.double().eval()


def right_padded(lengths, L):
    return torch.arange(L)[None, :] < torch.tensor(lengths)[:, None]  # [B L]


# --------------------------------------------------------------------------------------------
# Initialisation
# --------------------------------------------------------------------------------------------
def test_ring_init_distribution():
    """|lambda|^2 uniform on [r_min^2, r_max^2] (the paper's ring), phase uniform on [0, max_phase]."""
    torch.manual_seed(0)
    # 1e5 draws: drawing |lambda| (not its square) uniformly would put ~10% more or fewer in the end
    # bins (~1000 draws), far outside the 5 sigma (~475) allowed
    width, r_min, r_max, max_phase = 100_000, 0.8, 0.99, 2 * math.pi
    nu_log, theta_log, gamma_log = LRULayer.ring_init(width, r_min, r_max, max_phase)
    modulus = torch.exp(-torch.exp(nu_log))
    phase = torch.exp(theta_log)
    assert modulus.min() >= r_min - 1e-6 and modulus.max() <= r_max + 1e-6
    assert phase.min() >= 0 and phase.max() <= max_phase
    # ten equal bins of each uniform variable hold width/10 draws each, within 5 sigma
    sigma = math.sqrt(width * 0.1 * 0.9)
    for values, lo, hi in ((modulus**2, r_min**2, r_max**2), (phase, 0.0, max_phase)):
        counts = torch.histc(values.double(), bins=10, min=lo, max=hi)
        assert int(counts.sum()) == width
        assert (counts - width / 10).abs().max() < 5 * sigma, counts


def test_gamma_is_the_norm_correction_at_init():
    """gamma = sqrt(1 - |lambda|^2) at init, so a unit-variance input keeps unit variance in h."""
    torch.manual_seed(3)
    lam, gamma = LRULayer(D, N).eigenvalues()  # float32, as initialised
    assert_close("gamma", torch.sqrt(1 - lam.abs() ** 2), gamma)
    assert lam.abs().max() < 1


def test_ring_init_respects_a_narrow_ring():
    torch.manual_seed(1)
    nu_log, theta_log, _ = LRULayer.ring_init(500, 0.5, 0.6, math.pi / 4)
    modulus, phase = torch.exp(-torch.exp(nu_log)), torch.exp(theta_log)
    assert 0.5 - 1e-6 <= modulus.min() and modulus.max() <= 0.6 + 1e-6
    assert phase.max() <= math.pi / 4


# --------------------------------------------------------------------------------------------
# Padded, packed and step forms
# --------------------------------------------------------------------------------------------
def _padded_and_packed(layer, lengths, L, seed=0):
    g = torch.Generator().manual_seed(seed)
    B = len(lengths)
    x = torch.randn(B, L, D, generator=g, dtype=torch.float64)
    mask = right_padded(lengths, L)
    y, h = layer(x, mask)
    index = mask.flatten().nonzero().squeeze(1)
    y_packed, h_packed = layer.forward_packed(x.reshape(B * L, D)[index], index, (B, L))
    return x, mask, y, h, y_packed, h_packed


@pytest.mark.parametrize("block", [False, True], ids=["layer", "block"])
@pytest.mark.parametrize("lengths,L", [([5, 2, 7], 7), ([1], 1), ([3, 0, 1], 4), ([6, 6], 6)],
                         ids=["B3-L7", "B1-L1", "B3-L4-empty-row", "B2-L6-full"])
def test_packed_forward_equals_padded_forward(block, lengths, L):
    layer = make_layer(block=block)
    x, mask, y, h, y_packed, h_packed = _padded_and_packed(layer, lengths, L)
    assert_close("y at real positions", y[mask], y_packed)
    assert_close("states", h, h_packed)


@settings(max_examples=25, deadline=None, database=None)
@given(lengths=st.lists(st.integers(0, 12), min_size=1, max_size=4), extra=st.integers(0, 5),
       seed=st.integers(0, 2**16))
def test_property_packed_equals_padded(lengths, extra, seed):
    L = max(max(lengths), 1) + extra
    layer = make_layer(seed=seed % 7)
    _, mask, y, h, y_packed, h_packed = _padded_and_packed(layer, lengths, L, seed=seed)
    assert_close("y at real positions", y[mask], y_packed)
    assert_close("states", h, h_packed)


def test_padding_does_not_change_real_outputs():
    layer = make_layer()
    x, mask, y, _, _, _ = _padded_and_packed(layer, [4, 2], 6)
    noisy = x.masked_fill(~mask.unsqueeze(-1), 1e3)
    y_noisy, _ = layer(noisy, mask)
    assert_close("real positions", y[mask], y_noisy[mask])


@pytest.mark.parametrize("block", [False, True], ids=["layer", "block"])
def test_step_equals_forward(block):
    """Feeding a sequence one item at a time from the zero state gives forward's outputs and states."""
    layer = make_layer(seed=5, block=block)
    B, L = 3, 9
    x = torch.randn(B, L, D, dtype=torch.float64)
    y, h = layer(x, None)
    state = torch.zeros(B, N, dtype=torch.complex128)
    for t in range(L):
        y_t, state = layer.step(x[:, t], state)
        assert_close(f"y[{t}]", y[:, t], y_t)
        assert_close(f"h[{t}]", h[:, t], state)


def test_forward_keeps_input_dtype_and_shapes():
    layer = LRULayer(D, N, dropout=0.0).eval()
    x = torch.randn(2, 5, D)
    y, h = layer(x, right_padded([5, 3], 5))
    assert y.shape == (2, 5, D) and y.dtype == torch.float32
    assert h.shape == (2, 5, N) and h.dtype == torch.complex64
