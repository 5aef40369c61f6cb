"""Triton kernels against plain PyTorch references (forward and every gradient).

Without CUDA the kernels run in Triton's interpreter. TRITON_INTERPRET=1 must be set before
triton itself is imported (its own library functions are decorated at import time), so the
test session should set it early; this module sets it too and skips, with the reason, when
triton was already imported in compiled mode. Shapes are kept small: the interpreter is slow.
"""
import math
import os
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu":
    _TOO_LATE = "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1"
    os.environ["TRITON_INTERPRET"] = "1"
    if _TOO_LATE:
        pytest.skip(
            "no CUDA, and triton was imported before TRITON_INTERPRET=1 was set: "
            "run with TRITON_INTERPRET=1 in the environment",
            allow_module_level=True,
        )

pytest.importorskip("triton", reason="triton is not installed (pip install -e .[triton])")

import recbole_lru.ops.linattn.triton as linattn_triton  # noqa: E402
import recbole_lru.ops.scan.triton as scan_triton  # noqa: E402
from recbole_lru.ops.linattn.reference import linear_attention_reference  # noqa: E402
from recbole_lru.ops.scan.reference import lru_scan_reference  # noqa: E402

from helpers import assert_close  # noqa: E402



# ---------------------------------------------------------------------------------------------
# lru_scan


def make_scan_inputs(B, L, N, dtype, holes, seed=0):
    gen = torch.Generator().manual_seed(seed)
    real = torch.float64 if dtype == torch.complex128 else torch.float32
    radius = 0.8 + 0.19 * torch.rand(N, generator=gen, dtype=real)
    angle = 2 * math.pi * torch.rand(N, generator=gen, dtype=real)
    lam = torch.polar(radius, angle).to(DEVICE).requires_grad_()
    x = torch.randn(B, L, N, generator=gen, dtype=dtype).to(DEVICE).requires_grad_()
    mask = None
    if holes:
        mask = torch.rand(B, L, generator=gen) > 0.3
        mask[0, : L // 2] = False  # left padding
        if B > 1:
            mask[-1] = False  # an all-padding row
        mask = mask.to(DEVICE)
    return lam, x, mask


SCAN_CASES = [
    # B, L, N, holes
    (1, 1, 3, False),
    (2, 5, 20, True),
    (2, 16, 16, True),
    (1, 37, 20, True),
    (3, 37, 5, False),
]


@pytest.mark.parametrize(
    "B,L,N,holes", SCAN_CASES, ids=[f"B{b}-L{l}-N{n}-{'holes' if m else 'nomask'}" for b, l, n, m in SCAN_CASES]
)
def test_lru_scan_matches_reference(B, L, N, holes):
    lam, x, mask = make_scan_inputs(B, L, N, torch.complex64, holes)
    h = scan_triton.lru_scan_triton(lam, x, mask, block_l=16, block_n=16)
    ref = lru_scan_reference(lam, x, mask)
    assert_close("h", ref, h, 1e-4)

    grad = torch.randn_like(ref)
    loss, loss_ref = (h * grad.conj()).real.sum(), (ref * grad.conj()).real.sum()
    g_lam, g_x = torch.autograd.grad(loss, (lam, x))
    r_lam, r_x = torch.autograd.grad(loss_ref, (lam, x))
    assert_close("grad_x", r_x, g_x, 1e-4)
    assert_close("grad_lam", r_lam, g_lam, 1e-4)
    if mask is not None:
        assert (g_x[~mask] == 0).all()


def test_lru_scan_float64_and_default_blocks():
    lam, x, mask = make_scan_inputs(2, 37, 5, torch.complex128, holes=True)
    h = scan_triton.lru_scan_triton(lam, x, mask)
    ref = lru_scan_reference(lam, x, mask)
    assert_close("h", ref, h, 1e-9)
    g_lam, g_x = torch.autograd.grad(h.abs().sum(), (lam, x))
    r_lam, r_x = torch.autograd.grad(ref.abs().sum(), (lam, x))
    assert_close("grad_x", r_x, g_x, 1e-9)
    assert_close("grad_lam", r_lam, g_lam, 1e-9)


def test_lru_scan_future_and_padding_do_not_leak():
    lam, x, mask = make_scan_inputs(2, 21, 4, torch.complex64, holes=True)
    h = scan_triton.lru_scan_triton(lam, x, mask, block_l=16, block_n=16).detach()
    t = 9
    x2 = x.detach().clone()
    x2[:, t + 1 :] += 5.0  # change the future
    x2[~mask] = 100.0  # change every padding input
    h2 = scan_triton.lru_scan_triton(lam, x2, mask, block_l=16, block_n=16).detach()
    assert torch.equal(h[:, : t + 1], h2[:, : t + 1])


def test_lru_scan_rejects_real_input():
    with pytest.raises(TypeError):
        scan_triton.lru_scan_triton(torch.ones(3), torch.ones(1, 2, 3))


# ---------------------------------------------------------------------------------------------
# linear_attention


def make_attn_inputs(B, Hh, N, K, V, dtype, holes, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(B, Hh, N, K, generator=gen, dtype=dtype).to(DEVICE).requires_grad_() for _ in range(2))
    v = torch.randn(B, Hh, N, V, generator=gen, dtype=dtype).to(DEVICE).requires_grad_()
    mask = None
    if holes:
        mask = torch.rand(B, N, generator=gen) > 0.3
        mask[0, : N // 2] = False
        if B > 1:
            mask[-1] = False
        mask = mask.to(DEVICE)
    return q, k, v, mask


ATTN_CASES = [
    # B, Hh, N, K, V, holes
    (1, 1, 1, 4, 4, False),
    (2, 2, 5, 8, 12, True),
    (2, 1, 16, 16, 16, True),
    (1, 2, 37, 8, 8, True),
    (2, 2, 37, 20, 6, False),
]


def _attn_ids():
    return [f"B{b}-H{h}-N{n}-K{k}-V{v}-{'holes' if m else 'nomask'}" for b, h, n, k, v, m in ATTN_CASES]


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "full"])
@pytest.mark.parametrize("B,Hh,N,K,V,holes", ATTN_CASES, ids=_attn_ids())
def test_linear_attention_matches_reference(B, Hh, N, K, V, holes, causal):
    q, k, v, mask = make_attn_inputs(B, Hh, N, K, V, torch.float32, holes)
    out = linattn_triton.linear_attention_triton(q, k, v, mask, causal=causal, block_n=16)
    ref = linear_attention_reference(q, k, v, mask, causal=causal)
    assert_close("out", ref, out, 1e-4)
    if mask is not None:
        assert (out.transpose(1, 2)[~mask] == 0).all()

    grad = torch.randn_like(ref)
    grads = torch.autograd.grad((out * grad).sum(), (q, k, v))
    grads_ref = torch.autograd.grad((ref * grad).sum(), (q, k, v))
    for name, g, r in zip(("grad_q", "grad_k", "grad_v"), grads, grads_ref):
        assert_close(name, r, g, 1e-4)


def test_linear_attention_float64_default_chunk():
    q, k, v, mask = make_attn_inputs(2, 2, 70, 8, 8, torch.float64, holes=True)
    out = linattn_triton.linear_attention_triton(q, k, v, mask, causal=True)
    ref = linear_attention_reference(q, k, v, mask, causal=True)
    assert_close("out", ref, out, 1e-9)
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))
    grads_ref = torch.autograd.grad(ref.square().sum(), (q, k, v))
    for name, g, r in zip(("grad_q", "grad_k", "grad_v"), grads, grads_ref):
        assert_close(name, r, g, 1e-9)


def test_linear_attention_causal_future_and_padding_do_not_leak():
    q, k, v, mask = make_attn_inputs(2, 2, 21, 8, 8, torch.float32, holes=True)
    out = linattn_triton.linear_attention_triton(q, k, v, mask, causal=True, block_n=16).detach()
    t = 9
    q2, k2, v2 = (x.detach().clone() for x in (q, k, v))
    for x in (q2, k2, v2):
        x[:, :, t + 1 :] += 3.0  # change the future
        x.transpose(1, 2)[~mask] = 50.0  # change every padding token
    out2 = linattn_triton.linear_attention_triton(q2, k2, v2, mask, causal=True, block_n=16).detach()
    assert torch.equal(out[:, :, : t + 1], out2[:, :, : t + 1])


# ---------------------------------------------------------------------------------------------
# properties: any small shape, mask and dtype (the interpreter is slow, so few examples)


@settings(max_examples=6, deadline=None, database=None)
@given(B=st.integers(1, 3), L=st.integers(1, 33), N=st.integers(1, 20), holes=st.booleans(),
       double=st.booleans(), seed=st.integers(0, 2**16))
def test_property_lru_scan_matches_reference(B, L, N, holes, double, seed):
    dtype = torch.complex128 if double else torch.complex64
    lam, x, mask = make_scan_inputs(B, L, N, dtype, holes, seed=seed)
    h = scan_triton.lru_scan_triton(lam, x, mask, block_l=16, block_n=16)
    ref = lru_scan_reference(lam, x, mask)
    tol = 1e-9 if double else 1e-4
    assert_close("h", ref, h, tol)
    grad = torch.randn_like(ref)
    got = torch.autograd.grad((h * grad.conj()).real.sum(), (lam, x))
    want = torch.autograd.grad((ref * grad.conj()).real.sum(), (lam, x))
    assert_close("grad_lam", want[0], got[0], tol * max(1.0, want[0].abs().max().item()))
    assert_close("grad_x", want[1], got[1], tol)


@settings(max_examples=8, deadline=None, database=None)
@given(B=st.integers(1, 3), Hh=st.integers(1, 2), N=st.integers(1, 40), K=st.integers(2, 16),
       V=st.integers(1, 16), holes=st.booleans(), causal=st.booleans(), seed=st.integers(0, 2**16))
def test_property_linear_attention_matches_reference(B, Hh, N, K, V, holes, causal, seed):
    q, k, v, mask = make_attn_inputs(B, Hh, N, K, V, torch.float64, holes, seed=seed)
    out = linattn_triton.linear_attention_triton(q, k, v, mask, causal=causal, block_n=16)
    ref = linear_attention_reference(q, k, v, mask, causal=causal)
    assert_close("out", ref, out, 1e-9)
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))
    grads_ref = torch.autograd.grad(ref.square().sum(), (q, k, v))
    for name, g, r in zip(("grad_q", "grad_k", "grad_v"), grads, grads_ref):
        assert_close(name, r, g, 1e-9)


# ---------------------------------------------------------------------------------------------
# missing triton


def _call_scan():
    one = torch.ones(1, 1, 1, dtype=torch.complex64)
    return scan_triton.lru_scan_triton(one[0, 0], one)


def _call_linattn():
    one = torch.ones(1, 1, 1, 1)
    return linattn_triton.linear_attention_triton(one, one, one)


@pytest.mark.parametrize("module,call", [("scan", _call_scan), ("linattn", _call_linattn)], ids=["scan", "linattn"])
def test_missing_triton_names_the_install_command(module, call, monkeypatch):
    monkeypatch.setattr(scan_triton if module == "scan" else linattn_triton, "HAS_TRITON", False)
    with pytest.raises(ImportError, match=r"pip install -e \.\[triton\]"):
        call()
