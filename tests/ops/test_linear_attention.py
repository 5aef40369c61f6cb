"""LinRec linear attention (``recbole_lru.ops.linear_attention``) against the materialised form."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode

from recbole_lru.ops import linear_attention
import recbole_lru.ops.linattn as linattn_mod
from recbole_lru.ops.linattn import (
    DEFAULT_EPS,
    linear_attention_reference,
    linear_attention_step,
    linrec_feature_map,
)
from recbole_lru.ops.utils import SHARED_ENV

from helpers import assert_close


@pytest.fixture(autouse=True)
def _no_backend_override(monkeypatch):
    monkeypatch.delenv(linattn_mod.ENV_VAR, raising=False)
    monkeypatch.delenv(SHARED_ENV, raising=False)


def make_inputs(B, H, N, K, V, dtype, masked, seed=0, requires_grad=False):
    gen = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(B, H, N, K, generator=gen, dtype=dtype) for _ in range(2))
    v = torch.randn(B, H, N, V, generator=gen, dtype=dtype)
    mask = None
    if masked:
        mask = torch.rand(B, N, generator=gen) > 0.3
        mask[0, N // 2:] = False  # right padding in row 0
        if B > 1:
            mask[1, : N // 2] = False  # left padding in row 1
    if requires_grad:
        q, k, v = (t.requires_grad_() for t in (q, k, v))
    return q, k, v, mask


def grads(out, inputs, seed=1):
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(out.shape, generator=gen, dtype=out.dtype)
    return torch.autograd.grad((out * weight).sum(), inputs)


CASES = [
    (B, N, causal, masked, dtype)
    for B in (1, 3)
    for N in (1, 2, 7, 64, 129)
    for causal in (False, True)
    for masked in (False, True)
    for dtype in (torch.float64, torch.float32)
]


def case_id(case):
    B, N, causal, masked, dtype = case
    return (
        f"B{B}-N{N}-{'causal' if causal else 'full'}-{'mask' if masked else 'nomask'}"
        f"-{str(dtype).split('.')[-1]}"
    )


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_matches_reference(case):
    B, N, causal, masked, dtype = case
    q, k, v, mask = make_inputs(B, 2, N, 4, 3, dtype, masked, requires_grad=True)
    out = linear_attention(q, k, v, mask=mask, causal=causal, backend="torch")
    ref = linear_attention_reference(q, k, v, mask=mask, causal=causal)
    assert_close("out", ref, out)
    for name, g, g_ref in zip("qkv", grads(out, (q, k, v)), grads(ref, (q, k, v))):
        assert_close(f"d{name}", g_ref, g)


@pytest.mark.parametrize("chunk_size", [1, 3, 16, 37, 100])
def test_causal_any_chunk_size(chunk_size):
    q, k, v, mask = make_inputs(2, 2, 37, 5, 6, torch.float64, True)
    out = linear_attention(q, k, v, mask=mask, causal=True, chunk_size=chunk_size)
    assert_close("out", linear_attention_reference(q, k, v, mask=mask, causal=True), out, 1e-9)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_all_padding_row(causal):
    q, k, v, mask = make_inputs(3, 2, 9, 4, 4, torch.float64, True, requires_grad=True)
    mask[1] = False
    out = linear_attention(q, k, v, mask=mask, causal=causal)
    assert torch.all(out[1] == 0)
    assert torch.all(out.masked_select(~mask[:, None, :, None]) == 0)
    for name, g in zip("qkv", grads(out, (q, k, v))):
        assert torch.isfinite(g).all(), f"d{name} not finite"
        assert torch.all(g[1] == 0), f"d{name} nonzero on an all-padding row"


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_zero_vectors_are_finite(causal, dtype):
    q, k, v, _ = make_inputs(2, 2, 6, 4, 4, dtype, False)
    q[:, :, 1] = 0
    k[:, :, 2] = 0
    q[1] = 0
    k[1] = 0
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    out = linear_attention(q, k, v, causal=causal)
    assert torch.isfinite(out).all()
    assert torch.all(out[:, :, 1] == 0)  # phi(0) = 0
    for name, g in zip("qkv", grads(out, (q, k, v))):
        assert torch.isfinite(g).all(), f"d{name} not finite"
    assert_close("out", linear_attention_reference(q, k, v, causal=causal), out)


def test_feature_map_formula():
    x = torch.randn(4, 3, 7, 5, dtype=torch.float64)
    x[0, 0, 0] = 0
    e = F.elu(x)
    expected = e / torch.sqrt((e * e).sum(-1, keepdim=True) + DEFAULT_EPS)
    assert_close("phi", expected, linrec_feature_map(x), 1e-12)
    assert torch.all(linrec_feature_map(x).norm(dim=-1) < 1)
    # a zero vector maps to zero with a finite Jacobian I / sqrt(eps)
    z = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(linrec_feature_map(z).sum(), z)
    assert_close("dphi(0)", torch.full_like(g, 1 / math.sqrt(DEFAULT_EPS)), g, 1e-9)
    # the normalisation runs in float32 at least
    assert linrec_feature_map(x.half()).dtype == torch.float32
    assert linrec_feature_map(x.bfloat16()).dtype == torch.float32


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_step_equals_causal_forward(masked, dtype):
    B, H, N, K, V = 3, 2, 11, 4, 5
    q, k, v, mask = make_inputs(B, H, N, K, V, dtype, masked)
    full = linear_attention(q, k, v, mask=mask, causal=True)
    state, outs = None, []
    running = torch.zeros(B, H, K, V, dtype=dtype)
    for t in range(N):
        mask_t = None if mask is None else mask[:, t]
        out_t, state = linear_attention_step(q[:, :, t], k[:, :, t], v[:, :, t], state, mask_t)
        outs.append(out_t)
        kf = linrec_feature_map(k[:, :, t]).to(dtype)
        vt = v[:, :, t]
        if mask is not None:
            kf = kf * mask[:, t, None, None]
        running = running + kf.unsqueeze(-1) * vt.unsqueeze(-2)
        assert_close(f"state[{t}]", running, state.to(dtype))
    assert_close("steps", full, torch.stack(outs, dim=2))


def test_step_from_explicit_zero_state():
    q, k, v, _ = make_inputs(2, 2, 1, 4, 3, torch.float64, False)
    zero = torch.zeros(2, 2, 4, 3, dtype=torch.float64)
    a, sa = linear_attention_step(q[:, :, 0], k[:, :, 0], v[:, :, 0], None)
    b, sb = linear_attention_step(q[:, :, 0], k[:, :, 0], v[:, :, 0], zero)
    assert_close("out", b, a, 0)
    assert_close("state", sb, sa, 0)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_padding_changes_nothing(causal):
    q, k, v, mask = make_inputs(3, 2, 13, 4, 4, torch.float64, True)
    out = linear_attention(q, k, v, mask=mask, causal=causal)
    pad = ~mask[:, None, :, None]
    noise = [torch.randn_like(t) * 100 for t in (q, k, v)]
    q2, k2, v2 = (torch.where(pad, n, t) for t, n in zip((q, k, v), noise))
    out2 = linear_attention(q2, k2, v2, mask=mask, causal=causal)
    assert torch.all(out.masked_select(pad) == 0)
    assert_close("real outputs", out, out2, 1e-12)


def test_future_changes_nothing_causal():
    q, k, v, mask = make_inputs(2, 2, 40, 4, 4, torch.float64, True)
    out = linear_attention(q, k, v, mask=mask, causal=True, chunk_size=8)
    t0 = 17
    q2, k2, v2 = (t.clone() for t in (q, k, v))
    for t in (q2, k2, v2):
        t[:, :, t0:] = torch.randn_like(t[:, :, t0:]) * 10
    out2 = linear_attention(q2, k2, v2, mask=mask, causal=True, chunk_size=8)
    assert_close("prefix", out[:, :, :t0], out2[:, :, :t0], 1e-12)
    assert not torch.allclose(out2[:, :, t0:], out[:, :, t0:])


def test_no_mask_lets_padding_take_part():
    """mask=None is the public LinRec code: every position, padding included, takes part."""
    q, k, v, mask = make_inputs(2, 2, 8, 4, 4, torch.float64, True)
    ones = torch.ones_like(mask)
    assert_close("None == all-real", linear_attention(q, k, v, ones), linear_attention(q, k, v), 0)
    assert not torch.allclose(linear_attention(q, k, v), linear_attention(q, k, v, mask))


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_never_materialises_n_by_n(causal):
    """Every tensor created in forward and backward stays far below N x N elements."""
    N = 512
    q, k, v, mask = make_inputs(1, 1, N, 4, 4, torch.float32, True, requires_grad=True)
    sizes = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            result = func(*args, **(kwargs or {}))
            for t in result if isinstance(result, (tuple, list)) else (result,):
                if isinstance(t, torch.Tensor):
                    sizes.append(t.numel())
            return result

    with Record():
        out = linear_attention(q, k, v, mask=mask, causal=causal, backend="torch")
        out.sum().backward()
    assert max(sizes) < N * N // 8, f"largest intermediate has {max(sizes)} elements"


def test_invalid_backend_raises():
    q, k, v, _ = make_inputs(1, 1, 3, 2, 2, torch.float32, False)
    with pytest.raises(ValueError, match="backend"):
        linear_attention(q, k, v, backend="cuda")


def test_shape_errors():
    q, k, v, _ = make_inputs(2, 1, 3, 2, 2, torch.float32, False)
    with pytest.raises(ValueError):
        linear_attention(q, k[:, :, :2], v)
    with pytest.raises(ValueError):
        linear_attention(q, k, v[:, :, :2])
    with pytest.raises(ValueError):
        linear_attention(q, k, v, mask=torch.ones(2, 4, dtype=torch.bool))


def test_backend_resolution(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    resolve, env_var = linattn_mod.resolve_backend, linattn_mod.ENV_VAR
    monkeypatch.setattr(linattn_mod, "linear_attention_triton", lambda *a, **kw: None)
    assert resolve("auto", cpu) == "torch"
    assert resolve("auto", cuda) == "triton"
    assert resolve("auto", cuda, eps=1e-3) == "torch"
    with pytest.raises(ValueError, match="eps"):
        resolve("triton", cuda, eps=1e-3)
    for env, expected in [("reference", "reference"), ("TORCH", "torch"), ("auto", "torch")]:
        monkeypatch.setenv(env_var, env)
        assert resolve("auto", cpu) == expected, env
    monkeypatch.setenv(env_var, "reference")
    assert resolve("torch", cpu) == "torch"  # explicit beats the variable
    for bogus in ("bogus", "sequential"):  # the op's own variable takes only its own backends
        monkeypatch.setenv(env_var, bogus)
        with pytest.raises(ValueError, match=env_var):
            resolve("auto", cpu)
    monkeypatch.delenv(env_var)
    # the variable both ops once shared: scan-only values leave attention on auto
    for env, expected in [("reference", "reference"), ("sequential", "torch"), ("parallel", "torch"),
                          ("chunked", "torch")]:
        monkeypatch.setenv(SHARED_ENV, env)
        assert resolve("auto", cpu) == expected, env
    monkeypatch.setenv(SHARED_ENV, "sequential")
    assert resolve("auto", cuda) == "triton"
    monkeypatch.setenv(SHARED_ENV, "bogus")
    with pytest.raises(ValueError, match=SHARED_ENV):
        resolve("auto", cpu)
    monkeypatch.delenv(SHARED_ENV)
    monkeypatch.setattr(linattn_mod, "linear_attention_triton", None)
    assert resolve("auto", cuda) == "torch"
    with pytest.raises(RuntimeError, match="pip install"):
        resolve("triton", cpu)


def test_env_reference_backend_runs(monkeypatch):
    q, k, v, mask = make_inputs(2, 2, 5, 3, 3, torch.float64, True)
    monkeypatch.setenv(linattn_mod.ENV_VAR, "reference")
    out = linear_attention(q, k, v, mask=mask, causal=True)
    assert_close("out", linear_attention_reference(q, k, v, mask=mask, causal=True), out, 1e-12)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_half_inputs_and_autocast(causal):
    q, k, v, mask = make_inputs(2, 2, 20, 8, 8, torch.float32, True)
    ref = linear_attention_reference(q, k, v, mask=mask, causal=causal)
    half = linear_attention(q.half(), k.half(), v.half(), mask=mask, causal=causal)
    assert half.dtype == torch.float16
    assert_close("float16", ref, half.float(), 1e-2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = linear_attention(q, k, v, mask=mask, causal=causal)
    assert torch.isfinite(out).all()
    assert_close("autocast bf16", ref, out.float(), 5e-2)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_traces_under_torch_compile(causal):
    """fullgraph=True fails on any graph break, e.g. a host sync such as .item()."""
    q, k, v, mask = make_inputs(2, 2, 21, 4, 4, torch.float32, True)
    torch._dynamo.reset()
    fn = torch.compile(
        lambda q, k, v, m: linear_attention(q, k, v, mask=m, causal=causal),
        backend="aot_eager", fullgraph=True,
    )
    assert_close("compiled", linear_attention_reference(q, k, v, mask, causal), fn(q, k, v, mask), 1e-5)


@settings(max_examples=30, deadline=None, database=None)
@given(
    B=st.integers(1, 3),
    H=st.integers(1, 3),
    N=st.integers(1, 70),
    K=st.integers(1, 9),
    V=st.integers(1, 9),
    dtype=st.sampled_from([torch.float64, torch.float32]),
    causal=st.booleans(),
    mask_kind=st.sampled_from(["none", "random", "all_padding", "all_real"]),
    chunk_size=st.one_of(st.none(), st.integers(1, 40)),
    seed=st.integers(0, 2**16),
)
def test_property_matches_reference(B, H, N, K, V, dtype, causal, mask_kind, chunk_size, seed):
    q, k, v, mask = make_inputs(B, H, N, K, V, dtype, mask_kind != "none", seed=seed,
                                requires_grad=True)
    if mask_kind == "all_padding":
        mask[:] = False
    elif mask_kind == "all_real":
        mask[:] = True
    out = linear_attention(q, k, v, mask=mask, causal=causal, chunk_size=chunk_size)
    ref = linear_attention_reference(q, k, v, mask=mask, causal=causal)
    assert_close("out", ref, out)
    # With K = 1, phi(x) = e / sqrt(e^2 + eps) has slope up to 1/sqrt(eps) = 1e3 near x = 0, so
    # float32 rounding differences between two correct formulas grow by up to that much in dq, dk.
    grad_tol = 1e-3 if (K == 1 and dtype == torch.float32) else None
    for name, g, g_ref in zip("qkv", grads(out, (q, k, v)), grads(ref, (q, k, v))):
        assert torch.isfinite(g).all()
        assert_close(f"d{name}", g_ref, g, grad_tol)


def test_layout_names():
    """Every implementation is named after its file; the older names stay importable."""
    import recbole_lru.ops as ops

    for name in ("reference", "chunked", "triton", "step"):
        assert hasattr(linattn_mod, f"linear_attention_{name}"), name
    assert linattn_mod.linear_attention_ref is linear_attention_reference
    assert linattn_mod.linear_attention_torch is linattn_mod.linear_attention_chunked
    assert ops.linear_attention is linear_attention and "linear_attention" in ops.__all__
    assert all(not n.startswith("_") for n in linattn_mod.__all__)
