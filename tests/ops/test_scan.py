"""The LRU scan: every implementation against the time-loop reference, values and gradients."""
import functools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import recbole_lru.ops.scan as scan_mod
from recbole_lru.ops import lru_scan
from recbole_lru.ops.scan import SCAN_BACKENDS, lru_scan_reference, resolve_backend
from recbole_lru.ops.scan.chunked import lru_scan_chunked, lru_scan_chunked_autograd
from recbole_lru.ops.scan.parallel import lru_scan_parallel, lru_scan_parallel_autograd
from recbole_lru.ops.scan.sequential import lru_scan_sequential
from recbole_lru.ops.utils import SHARED_ENV

from helpers import TOL, assert_close

# every torch implementation, by name; "auto" is the dispatcher's own choice
IMPLEMENTATIONS = {
    "sequential": lru_scan_sequential,
    "parallel": lru_scan_parallel,
    "parallel_autograd": lru_scan_parallel_autograd,
    "chunked": lru_scan_chunked,
    "chunked_c4": lambda lam, x, mask: lru_scan_chunked(lam, x, mask, chunk=4),
    "chunked_autograd": lru_scan_chunked_autograd,
    "chunked_autograd_c4": lambda lam, x, mask: lru_scan_chunked_autograd(lam, x, mask, chunk=4),
    "auto": lambda lam, x, mask: lru_scan(lam, x, mask, backend="auto"),
}
# the shape grids leave out chunked_autograd_c4 (gradcheck and the property test cover it)
GRID_IMPLS = [name for name in IMPLEMENTATIONS if name != "chunked_autograd_c4"]


@pytest.fixture(autouse=True)
def _no_backend_override(monkeypatch):
    monkeypatch.delenv(scan_mod.ENV_BACKEND, raising=False)
    monkeypatch.delenv(SHARED_ENV, raising=False)


def make_lam(N, dtype, max_abs=0.999, generator=None):
    """Random diagonal c(N): magnitudes in [0, max_abs] with the first one at max_abs, any phase."""
    r = torch.rand(N, generator=generator, dtype=torch.float64) * max_abs
    r[0] = max_abs
    theta = (torch.rand(N, generator=generator, dtype=torch.float64) * 2 - 1) * math.pi
    return torch.polar(r, theta).to(dtype)


def make_inputs(B, L, N, dtype, mask_kind="holes", seed=0, max_abs=0.999):
    g = torch.Generator().manual_seed(seed)
    lam = make_lam(N, dtype, max_abs, g)
    x = torch.randn(B, L, N, generator=g, dtype=dtype)
    if mask_kind == "none":
        mask = None
    else:
        mask = torch.rand(B, L, generator=g) > 0.3
        if mask_kind == "left_padded":
            lengths = torch.randint(0, L + 1, (B,), generator=g)
            mask = torch.arange(L).unsqueeze(0) >= (L - lengths).unsqueeze(1)
        if B > 1:
            mask[-1] = False  # one row that is all padding
    return lam, x, mask


SHAPES = [(1, 1, 3), (2, 2, 4), (3, 3, 5), (1, 7, 8), (4, 64, 16), (2, 65, 8), (3, 200, 6)]
SHAPE_IDS = [f"B{b}-L{l}-N{n}" for b, l, n in SHAPES]


@functools.lru_cache(maxsize=None)
def _reference_forward(B, L, N, dtype, mask_kind):
    """The reference output for make_inputs(B, L, N, dtype, mask_kind), computed once per case."""
    with torch.no_grad():
        return lru_scan_reference(*make_inputs(B, L, N, dtype, mask_kind, seed=B * 1000 + L))


def _grad_case(B, L, N, dtype):
    lam, x, mask = make_inputs(B, L, N, dtype, "holes", seed=7 + L)
    w = torch.randn(B, L, N, dtype=dtype, generator=torch.Generator().manual_seed(1))
    return lam, x, mask, w


def _value_and_grads(fn, B, L, N, dtype):
    lam, x, mask, w = _grad_case(B, L, N, dtype)
    lam_ = lam.clone().requires_grad_()
    x_ = x.clone().requires_grad_()
    h = fn(lam_, x_, mask)
    # the autograd forms never touch lam when L == 1 (its gradient is then zero)
    glam, gx = torch.autograd.grad(h, (lam_, x_), grad_outputs=w, allow_unused=True)
    return h.detach(), torch.zeros_like(lam) if glam is None else glam, gx


@functools.lru_cache(maxsize=None)
def _reference_grads(B, L, N, dtype):
    return _value_and_grads(lru_scan_reference, B, L, N, dtype)


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128], ids=["c64", "c128"])
@pytest.mark.parametrize("mask_kind", ["holes", "left_padded", "none"])
@pytest.mark.parametrize("B,L,N", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("impl", GRID_IMPLS)
def test_forward_matches_reference(impl, B, L, N, mask_kind, dtype):
    lam, x, mask = make_inputs(B, L, N, dtype, mask_kind, seed=B * 1000 + L)
    ref = _reference_forward(B, L, N, dtype, mask_kind)
    with torch.no_grad():
        got = IMPLEMENTATIONS[impl](lam, x, mask)
    assert_close(impl, ref, got)


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128], ids=["c64", "c128"])
@pytest.mark.parametrize("B,L,N", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("impl", GRID_IMPLS)
def test_gradients_match_reference(impl, B, L, N, dtype):
    h_ref, glam_ref, gx_ref = _reference_grads(B, L, N, dtype)
    h, glam, gx = _value_and_grads(IMPLEMENTATIONS[impl], B, L, N, dtype)
    rtol, atol = TOL[dtype]
    if dtype == torch.complex64:
        atol = 1e-4 * max(1.0, glam_ref.abs().max().item())  # grad_lam sums B*L products
    assert_close(f"{impl} h", h_ref, h)
    assert_close(f"{impl} grad x", gx_ref, gx)
    assert_close(f"{impl} grad lam", glam_ref, glam, rtol=rtol, atol=atol)


@pytest.mark.parametrize("impl", list(IMPLEMENTATIONS) + ["reference"])
def test_gradcheck(impl):
    """complex128 gradcheck (PyTorch's complex convention) on B2-L6-N2 with holes in the mask.

    The custom backward passes get the full check; the forms differentiated by autograd the fast one.
    """
    fn = lru_scan_reference if impl == "reference" else IMPLEMENTATIONS[impl]
    lam, x, mask = make_inputs(2, 6, 2, torch.complex128, "holes", seed=3, max_abs=0.9)
    lam.requires_grad_()
    x.requires_grad_()
    fast = impl == "reference" or impl.startswith(("parallel_autograd", "chunked_autograd"))
    assert torch.autograd.gradcheck(lambda l_, x_: fn(l_, x_, mask), (lam, x), fast_mode=fast)


@pytest.mark.parametrize("backend", ["sequential", "parallel", "chunked", "auto"])
def test_gradcheck_through_real_parameters(backend):
    """lam = exp(-exp(nu_log) + i exp(theta_log)) as in the LRU layer: gradients reach the real parameters."""
    g = torch.Generator().manual_seed(5)
    nu_log = torch.randn(3, dtype=torch.float64, generator=g).requires_grad_()
    theta_log = torch.randn(3, dtype=torch.float64, generator=g).requires_grad_()
    x = torch.randn(2, 6, 3, dtype=torch.complex128, generator=g).requires_grad_()
    mask = torch.tensor([[True] * 6, [False, False, True, True, False, True]])

    def f(nu_log, theta_log, x):
        lam = torch.exp(torch.complex(-torch.exp(nu_log), torch.exp(theta_log)))
        return lru_scan(lam, x, mask, backend=backend).real

    assert torch.autograd.gradcheck(f, (nu_log, theta_log, x))


@pytest.mark.parametrize("impl", ["sequential", "parallel", "chunked", "auto"])
def test_long_sequence_near_unit_magnitude(impl):
    """L=4096, |lam|=0.9999 in complex64: finite and within 1e-3 of the complex128 reference."""
    B, L, N = 2, 4096, 4
    g = torch.Generator().manual_seed(11)
    lam = torch.polar(torch.full((N,), 0.9999), torch.tensor([0.0, 0.01, 1.0, -3.0]))
    x = torch.randn(B, L, N, dtype=torch.complex64, generator=g)
    mask = torch.rand(B, L, generator=g) > 0.1
    ref = lru_scan_reference(lam.to(torch.complex128), x.to(torch.complex128), mask)
    with torch.no_grad():
        got = IMPLEMENTATIONS[impl](lam, x, mask)
    assert torch.isfinite(torch.view_as_real(got)).all()
    err = (got.to(torch.complex128) - ref).abs().max() / ref.abs().max()
    assert err < 1e-3, f"{impl}: relative error {err:.3e}"


@pytest.mark.parametrize("impl", ["sequential", "parallel", "chunked_c4", "auto"])
def test_padding_and_future_do_not_leak(impl):
    fn = IMPLEMENTATIONS[impl]
    lam, x, mask = make_inputs(3, 12, 4, torch.complex128, "holes", seed=2)
    h = fn(lam, x, mask)
    # changing inputs at padded positions changes nothing
    noisy = torch.where(mask.unsqueeze(-1), x, x + 100)
    assert torch.equal(fn(lam, noisy, mask), h)
    # changing inputs from step 5 on leaves steps 0..4 as they were
    future = x.clone()
    future[:, 5:] += 10
    assert_close(impl, h[:, :5], fn(lam, future, mask)[:, :5], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", GRID_IMPLS)
def test_strided_inputs(impl):
    """x as a transposed view (not contiguous) and a sliced mask give the same values and gradients."""
    g = torch.Generator().manual_seed(4)
    lam = make_lam(5, torch.complex128, generator=g)
    x = torch.randn(3, 5, 20, dtype=torch.complex128, generator=g).transpose(1, 2)  # [B L N], strided
    mask = (torch.rand(3, 40, generator=g) > 0.3)[:, ::2]
    w = torch.randn(3, 20, 5, dtype=torch.complex128, generator=g)
    x_ = x.detach().requires_grad_()
    got = IMPLEMENTATIONS[impl](lam, x_, mask)
    ref = lru_scan_reference(lam, x_, mask)
    assert_close(impl, ref, got)
    (gx,) = torch.autograd.grad(got, x_, grad_outputs=w)
    (gx_ref,) = torch.autograd.grad(ref, x_, grad_outputs=w)
    assert_close(impl, gx_ref, gx)


@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
@pytest.mark.parametrize("backend", ["sequential", "parallel", "chunked", "reference", "auto"])
def test_dtypes_are_kept(backend):
    lam, x, mask = make_inputs(2, 5, 3, torch.complex64)
    half = lru_scan(lam.to(torch.complex32), x.to(torch.complex32), mask, backend=backend)
    assert half.dtype == torch.complex32
    ref = lru_scan_reference(lam, x.to(torch.complex32).to(torch.complex64), mask)
    assert_close(backend, ref, half.to(torch.complex64), rtol=2e-3, atol=2e-3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = lru_scan(lam, x, mask, backend=backend)
    assert out.dtype == torch.complex64
    assert_close(backend, lru_scan_reference(lam, x, mask), out)


@pytest.mark.parametrize("backend", ["sequential", "auto"])
def test_torch_compile_full_graph(backend):
    lam, x, mask = make_inputs(2, 9, 3, torch.complex64)
    lam.requires_grad_()
    torch._dynamo.reset()
    fn = torch.compile(lambda l_, x_, m_: lru_scan(l_, x_, m_, backend=backend), backend="aot_eager", fullgraph=True)
    h = fn(lam, x, mask)
    assert_close(backend, lru_scan_reference(lam, x, mask).detach(), h.detach())
    (glam,) = torch.autograd.grad(h.abs().sum(), lam)
    (glam_ref,) = torch.autograd.grad(lru_scan_reference(lam, x, mask).abs().sum(), lam)
    assert_close(backend, glam_ref, glam, rtol=1e-4, atol=1e-4)


def test_invalid_backend_lists_valid_values():
    lam, x, mask = make_inputs(1, 3, 2, torch.complex64)
    with pytest.raises(ValueError, match="valid values"):
        lru_scan(lam, x, mask, backend="cuda")


@pytest.mark.parametrize(
    "lam_shape,x_shape,mask_shape",
    [((3,), (2, 4), None), ((4,), (2, 5, 3), None), ((3, 1), (2, 5, 3), None), ((3,), (2, 5, 3), (2, 4))],
    ids=["x-2d", "lam-width", "lam-2d", "mask-shape"],
)
def test_wrong_shapes_raise(lam_shape, x_shape, mask_shape):
    lam = torch.zeros(lam_shape, dtype=torch.complex64)
    x = torch.zeros(x_shape, dtype=torch.complex64)
    mask = None if mask_shape is None else torch.ones(mask_shape, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"\(B, L"):
        lru_scan(lam, x, mask)


def test_wrong_dtypes_raise():
    lam, x, mask = make_inputs(2, 4, 3, torch.complex64)
    with pytest.raises(TypeError, match="complex"):
        lru_scan(lam, x.real, mask)
    with pytest.raises(TypeError, match="complex"):
        lru_scan(lam.abs(), x, mask)
    with pytest.raises(TypeError, match="bool"):
        lru_scan(lam, x, mask.float())


@pytest.mark.parametrize("forced", ["sequential", "parallel", "chunked", "reference"])
def test_environment_variable_forces_backend(monkeypatch, forced):
    lam, x, mask = make_inputs(2, 6, 3, torch.complex64)
    calls = []
    original = scan_mod._IMPLEMENTATIONS[forced]
    monkeypatch.setitem(scan_mod._IMPLEMENTATIONS, forced, lambda *a: calls.append(forced) or original(*a))
    monkeypatch.setenv(scan_mod.ENV_BACKEND, forced)
    assert resolve_backend(lam, x) == forced
    out = lru_scan(lam, x, mask)
    assert calls == [forced]
    assert_close(forced, lru_scan_reference(lam, x, mask), out)
    # an explicit backend wins over the variable
    assert resolve_backend(lam, x, "parallel") == "parallel"


def test_environment_variable_is_validated(monkeypatch):
    lam, x, _ = make_inputs(1, 3, 2, torch.complex64)
    monkeypatch.setenv(scan_mod.ENV_BACKEND, "fastest")
    with pytest.raises(ValueError, match="RECBOLE_LRU_SCAN_BACKEND"):
        lru_scan(lam, x)
    monkeypatch.setenv(scan_mod.ENV_BACKEND, "torch")  # an attention backend is not a scan backend
    with pytest.raises(ValueError, match="RECBOLE_LRU_SCAN_BACKEND"):
        lru_scan(lam, x)


def test_shared_variable_is_a_fallback(monkeypatch):
    """RECBOLE_LRU_BACKEND, the variable both ops once shared: its scan values steer the scan, the
    attention's values leave the scan on auto, the scan's own variable wins, and nonsense raises."""
    lam, x, _ = make_inputs(1, 3, 2, torch.complex64)
    monkeypatch.setenv(SHARED_ENV, "chunked")
    assert resolve_backend(lam, x) == "chunked"
    monkeypatch.setenv(scan_mod.ENV_BACKEND, "reference")
    assert resolve_backend(lam, x) == "reference"
    monkeypatch.delenv(scan_mod.ENV_BACKEND)
    monkeypatch.setenv(SHARED_ENV, "torch")
    assert resolve_backend(lam, x) == resolve_backend(lam, x, "auto") == "parallel"
    monkeypatch.setenv(SHARED_ENV, "fastest")
    with pytest.raises(ValueError, match=SHARED_ENV):
        lru_scan(lam, x)


def test_backend_list():
    assert set(SCAN_BACKENDS) == {"auto", "sequential", "parallel", "chunked", "triton", "reference"}


def test_auto_rules_on_cpu():
    def pick(B, L, N):
        return resolve_backend(torch.zeros(N, dtype=torch.complex64), torch.zeros(B, L, N, dtype=torch.complex64))

    assert pick(128, 200, 128) == "sequential"
    assert pick(1, 4096, 8) == "parallel"
    assert pick(2, 50, 16) == "parallel"


def test_missing_triton_fails_cleanly(monkeypatch):
    monkeypatch.setattr(scan_mod, "lru_scan_triton", None)
    lam, x, mask = make_inputs(1, 3, 2, torch.complex64)
    with pytest.raises(RuntimeError, match=r"pip install -e \.\[triton\]"):
        lru_scan(lam, x, mask, backend="triton")


HYPOTHESIS_IMPLS = ["sequential", "parallel", "parallel_autograd", "chunked", "chunked_c4", "chunked_autograd_c4", "auto"]


@settings(max_examples=30, deadline=None)
@given(
    B=st.integers(1, 4),
    L=st.integers(1, 70),
    N=st.integers(1, 8),
    double=st.booleans(),
    max_abs=st.floats(0.0, 0.9999),
    seed=st.integers(0, 2**31 - 1),
    hole_rate=st.sampled_from([0.0, 0.3, 1.0]),
)
def test_property_matches_reference(B, L, N, double, max_abs, seed, hole_rate):
    dtype = torch.complex128 if double else torch.complex64
    g = torch.Generator().manual_seed(seed)
    lam = make_lam(N, dtype, max_abs, g)
    x = torch.randn(B, L, N, dtype=dtype, generator=g)
    mask = torch.rand(B, L, generator=g) >= hole_rate
    ref = lru_scan_reference(lam, x, mask)
    for impl in HYPOTHESIS_IMPLS:
        with torch.no_grad():
            assert_close(impl, ref, IMPLEMENTATIONS[impl](lam, x, mask))
    # one backward per example, on the custom-backward path the dispatcher uses most
    lam_ = lam.clone().requires_grad_()
    x_ = x.clone().requires_grad_()
    w = torch.randn(B, L, N, dtype=dtype, generator=g)
    got = torch.autograd.grad(lru_scan_sequential(lam_, x_, mask), (lam_, x_), grad_outputs=w)
    want = torch.autograd.grad(lru_scan_reference(lam_, x_, mask), (lam_, x_), grad_outputs=w)
    assert_close("grad x", want[1], got[1])
    rtol, atol = TOL[dtype]
    scale = max(1.0, want[0].abs().max().item())  # grad_lam sums B*L products
    assert_close("grad lam", want[0], got[0], rtol=rtol, atol=atol * scale * 10)


def test_layout_names():
    """Every implementation is named after its file; the older names stay importable."""
    import recbole_lru.ops as ops

    for name in ("reference", "sequential", "parallel", "chunked", "triton"):
        assert hasattr(scan_mod, f"lru_scan_{name}"), name
    assert scan_mod.lru_scan_ref is lru_scan_reference
    assert ops.lru_scan is lru_scan and "lru_scan" in ops.__all__
    assert all(not n.startswith("_") for n in scan_mod.__all__)
