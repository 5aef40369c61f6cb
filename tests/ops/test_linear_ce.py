"""Catalogue scoring + cross-entropy: the chunked fused op against the plain reference, values and
gradients wrt h, weight and bias, in float64 (1e-9) and float32, on awkward shapes."""
import helpers
import pytest
import torch

from recbole_lru.ops.linear_ce import (
    LINEAR_CE_BACKENDS,
    linear_cross_entropy,
    linear_cross_entropy_chunked,
    linear_cross_entropy_reference,
    resolve_backend,
)

TOL = {torch.float64: dict(rtol=1e-9, atol=1e-9), torch.float32: dict(rtol=1e-4, atol=1e-6)}


def assert_close(name, got, ref, rtol, atol):
    """The shared helper, with NaN allowed where the reference is NaN (a mean over no target)."""
    assert torch.equal(got.isnan(), ref.isnan()), f"{name}: NaN pattern differs"
    helpers.assert_close(name, ref.nan_to_num(), got.nan_to_num(), rtol=rtol, atol=atol)


def make_inputs(N, V, D, dtype, bias=True, ignored=0, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(N, D, generator=g, dtype=torch.float64).to(dtype)
    w = (torch.randn(V, D, generator=g, dtype=torch.float64) * 0.5).to(dtype)
    b = (torch.randn(V, generator=g, dtype=torch.float64)).to(dtype) if bias else None
    target = torch.randint(0, V, (N,), generator=g)
    target[:ignored] = -100
    return h, w, b, target


def loss_and_grads(fn, h, w, b, target, **kw):
    leaves = [t.clone().requires_grad_() for t in (h, w, b) if t is not None]
    hh, ww = leaves[0], leaves[1]
    bb = leaves[2] if b is not None else None
    loss = fn(hh, ww, target, bb, **kw)
    loss.backward(torch.tensor(1.7, dtype=loss.dtype))  # a non-unit incoming gradient
    return [loss.detach()] + [t.grad for t in leaves]


CASES = [
    # N, V, D, chunk, ignored
    pytest.param(1, 7, 3, 64, 0, id="N1-V7-D3-C64"),
    pytest.param(5, 1, 4, 2, 0, id="N5-V1-D4-C2"),
    pytest.param(64, 101, 8, 64, 0, id="N64-V101-D8-C64-exact"),
    pytest.param(65, 101, 8, 64, 0, id="N65-V101-D8-C64-edge"),
    pytest.param(130, 257, 16, 32, 0, id="N130-V257-D16-C32"),
    pytest.param(37, 53, 5, 7, 9, id="N37-V53-D5-C7-ignored9"),
    pytest.param(11, 13, 3, 4, 11, id="N11-V13-D3-C4-all-ignored"),
    pytest.param(0, 13, 3, 4, 0, id="N0-empty"),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("N,V,D,chunk,ignored", CASES)
def test_chunked_matches_reference(N, V, D, chunk, ignored, bias, dtype):
    h, w, b, target = make_inputs(N, V, D, dtype, bias, ignored)
    ref = loss_and_grads(linear_cross_entropy_reference, h, w, b, target)
    got = loss_and_grads(linear_cross_entropy_chunked, h, w, b, target, chunk_size=chunk)
    for name, g, r in zip(["loss", "dh", "dweight", "dbias"], got, ref):
        assert_close(name, g, r, **TOL[dtype])


def test_large_logits_stay_finite():
    # logits of +-1e3: the per-chunk max subtraction must keep exp in range
    h, w, b, target = make_inputs(9, 31, 4, torch.float64)
    h = h * 300
    ref = loss_and_grads(linear_cross_entropy_reference, h, w, b, target)
    got = loss_and_grads(linear_cross_entropy_chunked, h, w, b, target, chunk_size=4)
    for name, g, r in zip(["loss", "dh", "dweight", "dbias"], got, ref):
        assert torch.isfinite(g).all(), name
        assert_close(name, g, r, **TOL[torch.float64])


def test_gradcheck_and_partial_grads():
    h, w, b, target = make_inputs(6, 9, 3, torch.float64)
    hh, ww, bb = (t.clone().requires_grad_() for t in (h, w, b))
    assert torch.autograd.gradcheck(lambda x, y, z: linear_cross_entropy_chunked(x, y, target, z, chunk_size=4), (hh, ww, bb))
    # only h requires grad (a frozen catalogue): no gradient is made for the others
    hh = h.clone().requires_grad_()
    loss = linear_cross_entropy_chunked(hh, w, target, b, chunk_size=4)
    loss.backward()
    ref_h = h.clone().requires_grad_()
    linear_cross_entropy_reference(ref_h, w, target, b).backward()
    assert_close("dh", hh.grad, ref_h.grad, **TOL[torch.float64])


def test_no_grad_and_half_inputs():
    h, w, b, target = make_inputs(20, 40, 8, torch.float32)
    with torch.no_grad():
        assert_close("loss", linear_cross_entropy_chunked(h, w, target, b, chunk_size=8),
                     linear_cross_entropy_reference(h, w, target, b), **TOL[torch.float32])
    # bf16 inputs are computed in float32 and the loss returned in bf16
    got = linear_cross_entropy_chunked(h.bfloat16(), w.bfloat16(), target, b.bfloat16())
    ref = linear_cross_entropy_reference(h.bfloat16().float(), w.bfloat16().float(), target, b.bfloat16().float())
    assert got.dtype == torch.bfloat16 and abs(got.float() - ref).item() < 2e-2


@pytest.mark.parametrize("N,V,D,chunk,ignored", [CASES[0], CASES[4], CASES[5]])
def test_bf16_products_within_bf16_error(N, V, D, chunk, ignored):
    # products in bf16 (8-bit mantissa): loss and each gradient within 1% of float32, by norm
    h, w, b, target = make_inputs(N, V, D, torch.float32, True, ignored)
    ref = loss_and_grads(linear_cross_entropy_reference, h, w, b, target)
    got = loss_and_grads(linear_cross_entropy_chunked, h, w, b, target, chunk_size=chunk, matmul_dtype=torch.bfloat16)
    for name, g, r in zip(["loss", "dh", "dweight", "dbias"], got, ref):
        assert g.dtype == r.dtype == torch.float32
        assert ((g - r).norm() / r.norm()).item() < 1e-2, name


def test_dispatcher():
    h, w, b, target = make_inputs(10, 12, 4, torch.float64)
    ref = linear_cross_entropy_reference(h, w, target, b)
    for backend in LINEAR_CE_BACKENDS:
        tol = dict(rtol=1e-2, atol=0) if backend == "chunked_bf16" else TOL[torch.float64]
        assert_close(backend, linear_cross_entropy(h, w, target, b, backend=backend), ref, **tol)
    assert resolve_backend(torch.device("cpu")) == "chunked"
    assert resolve_backend(torch.device("cuda")) == "reference"
    assert resolve_backend(torch.device("cuda"), "chunked") == "chunked"
    with pytest.raises(ValueError, match="valid values"):
        linear_cross_entropy(h, w, target, b, backend="fast")
    with pytest.raises(ValueError, match="weight"):
        linear_cross_entropy_chunked(h, w[:, :3], target, b)
