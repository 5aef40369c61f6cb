"""Triton kernels for LinRec attention.

    out = phi(q) (phi(k)^T v) / sqrt(K)                      (non-causal)
    out_t = phi(q_t) sum_{i<=t} phi(k_i) v_i^T / sqrt(K)     (causal)

``phi`` (ELU, then ``x / sqrt(||x||^2 + eps)``) is ``linrec_feature_map`` from
``feature_map.py``, run in PyTorch so autograd flows through it; padding is applied by
zeroing phi(q) and phi(k) at masked positions (they then neither contribute nor
receive anything, and their output rows are zero).

Causal core, one program per (batch, head), walking the sequence in chunks of
BLOCK_N tokens with a running state S = sum_{i < chunk} k_i v_i^T of shape (K, V):

    out_c = q_c S + tril(q_c k_c^T) v_c ;  S += k_c^T v_c

Its backward runs as two programs per (batch, head): one walks forwards for dq
(``dq_c = do_c S^T + tril(do_c v_c^T) k_c``), the other walks backwards with
R = sum_{t > chunk} q_t do_t^T for dk and dv
(``dk_c = triu(v_c do_c^T) q_c + v_c R^T``, ``dv_c = triu(k_c q_c^T) do_c + k_c R``).
The dots use ``input_precision="ieee"`` (no TF32), so float32 matches the reference.

Non-causal attention is two batched matmuls, ``phi(q) @ (phi(k)^T @ v)``, each
already a single pass over its inputs, so it is left to PyTorch (cuBLAS).

Memory traffic of the causal core, with E = B*H*N*K elements (K == V) of ``e`` bytes:
forward reads q, k, v and writes out (4*E*e); backward reads q, k, v, do (the dq
program reads k, v, do) and writes dq, dk, dv (10*E*e).
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from ..utils import compute_dtype
from .feature_map import DEFAULT_EPS, linrec_feature_map
from .reference import linear_attention_reference

try:
    import triton
    import triton.language as tl
except ImportError:  # optional dependency
    triton = None
    tl = None

HAS_TRITON = triton is not None

__all__ = ["linear_attention_triton", "HAS_TRITON"]

_INSTALL_HINT = (
    "the Triton backend of linear_attention needs the `triton` package: "
    "install it with `pip install -e .[triton]`"
)


if HAS_TRITON:

    @triton.jit
    def _causal_fwd_kernel(
        q_ptr,  # [BH N K]
        k_ptr,  # [BH N K]
        v_ptr,  # [BH N V]
        o_ptr,  # [BH N V]
        N,
        K,
        V,
        scale_ptr,  # [1] 1/sqrt(K) in the working dtype
        BLOCK_N: tl.constexpr,
        BLOCK_K: tl.constexpr,
        BLOCK_V: tl.constexpr,
    ):
        pid = tl.program_id(0).to(tl.int64)
        q_ptr += pid * N * K
        k_ptr += pid * N * K
        v_ptr += pid * N * V
        o_ptr += pid * N * V
        rows = tl.arange(0, BLOCK_N)
        offs_k = tl.arange(0, BLOCK_K)
        offs_v = tl.arange(0, BLOCK_V)
        k_ok = offs_k < K
        v_ok = offs_v < V
        lower = rows[:, None] >= rows[None, :]  # [BN BN] query row sees key column
        dtype = q_ptr.dtype.element_ty
        scale = tl.load(scale_ptr)
        state = tl.zeros((BLOCK_K, BLOCK_V), dtype)
        for start in range(0, N, BLOCK_N):
            n_ok = (start + rows) < N
            qk_off = (start + rows)[:, None] * K + offs_k[None, :]
            v_off = (start + rows)[:, None] * V + offs_v[None, :]
            qk_mask = n_ok[:, None] & k_ok[None, :]
            v_mask = n_ok[:, None] & v_ok[None, :]
            q = tl.load(q_ptr + qk_off, mask=qk_mask, other=0.0)
            k = tl.load(k_ptr + qk_off, mask=qk_mask, other=0.0)
            v = tl.load(v_ptr + v_off, mask=v_mask, other=0.0)
            scores = tl.dot(q, tl.trans(k), input_precision="ieee")  # [BN BN]
            scores = tl.where(lower, scores, 0.0).to(dtype)
            out = tl.dot(q, state, input_precision="ieee")
            out += tl.dot(scores, v, input_precision="ieee")
            tl.store(o_ptr + v_off, (out * scale).to(dtype), mask=v_mask)
            state += tl.dot(tl.trans(k), v, input_precision="ieee")

    @triton.jit
    def _causal_bwd_kernel(
        q_ptr,
        k_ptr,
        v_ptr,
        do_ptr,  # [BH N V]
        dq_ptr,
        dk_ptr,
        dv_ptr,
        N,
        K,
        V,
        scale_ptr,  # [1] 1/sqrt(K) in the working dtype
        BLOCK_N: tl.constexpr,
        BLOCK_K: tl.constexpr,
        BLOCK_V: tl.constexpr,
    ):
        pid = tl.program_id(0).to(tl.int64)
        which = tl.program_id(1)  # 0: dq, walking forwards; 1: dk and dv, walking backwards
        q_ptr += pid * N * K
        k_ptr += pid * N * K
        dq_ptr += pid * N * K
        dk_ptr += pid * N * K
        v_ptr += pid * N * V
        do_ptr += pid * N * V
        dv_ptr += pid * N * V
        rows = tl.arange(0, BLOCK_N)
        offs_k = tl.arange(0, BLOCK_K)
        offs_v = tl.arange(0, BLOCK_V)
        k_ok = offs_k < K
        v_ok = offs_v < V
        dtype = q_ptr.dtype.element_ty
        scale = tl.load(scale_ptr)
        n_chunks = tl.cdiv(N, BLOCK_N)
        if which == 0:
            lower = rows[:, None] >= rows[None, :]
            state = tl.zeros((BLOCK_K, BLOCK_V), dtype)  # sum of k_i v_i^T before the chunk
            for c in range(0, n_chunks):
                start = c * BLOCK_N
                n_ok = (start + rows) < N
                qk_off = (start + rows)[:, None] * K + offs_k[None, :]
                v_off = (start + rows)[:, None] * V + offs_v[None, :]
                qk_mask = n_ok[:, None] & k_ok[None, :]
                v_mask = n_ok[:, None] & v_ok[None, :]
                k = tl.load(k_ptr + qk_off, mask=qk_mask, other=0.0)
                v = tl.load(v_ptr + v_off, mask=v_mask, other=0.0)
                do = tl.load(do_ptr + v_off, mask=v_mask, other=0.0) * scale
                d_scores = tl.dot(do, tl.trans(v), input_precision="ieee")  # [BN BN]
                d_scores = tl.where(lower, d_scores, 0.0).to(dtype)
                dq = tl.dot(do, tl.trans(state), input_precision="ieee")
                dq += tl.dot(d_scores, k, input_precision="ieee")
                tl.store(dq_ptr + qk_off, dq.to(dtype), mask=qk_mask)
                state += tl.dot(tl.trans(k), v, input_precision="ieee")
        else:
            upper = rows[:, None] <= rows[None, :]  # key row is seen by query column
            state = tl.zeros((BLOCK_K, BLOCK_V), dtype)  # sum of q_t do_t^T after the chunk
            for c in range(0, n_chunks):
                start = (n_chunks - 1 - c) * BLOCK_N
                n_ok = (start + rows) < N
                qk_off = (start + rows)[:, None] * K + offs_k[None, :]
                v_off = (start + rows)[:, None] * V + offs_v[None, :]
                qk_mask = n_ok[:, None] & k_ok[None, :]
                v_mask = n_ok[:, None] & v_ok[None, :]
                q = tl.load(q_ptr + qk_off, mask=qk_mask, other=0.0)
                k = tl.load(k_ptr + qk_off, mask=qk_mask, other=0.0)
                v = tl.load(v_ptr + v_off, mask=v_mask, other=0.0)
                do = tl.load(do_ptr + v_off, mask=v_mask, other=0.0) * scale
                d_scores_t = tl.dot(v, tl.trans(do), input_precision="ieee")  # [BN BN]
                d_scores_t = tl.where(upper, d_scores_t, 0.0).to(dtype)
                scores_t = tl.dot(k, tl.trans(q), input_precision="ieee")
                scores_t = tl.where(upper, scores_t, 0.0).to(dtype)
                dk = tl.dot(d_scores_t, q, input_precision="ieee")
                dk += tl.dot(v, tl.trans(state), input_precision="ieee")
                dv = tl.dot(scores_t, do, input_precision="ieee")
                dv += tl.dot(k, state, input_precision="ieee")
                tl.store(dk_ptr + qk_off, dk.to(dtype), mask=qk_mask)
                tl.store(dv_ptr + v_off, dv.to(dtype), mask=v_mask)
                state += tl.dot(tl.trans(q), do, input_precision="ieee")


def _blocks(N: int, K: int, V: int, block_n: Optional[int]):
    if block_n is None:
        block_n = 64
    # tl.dot needs every dimension >= 16; a whole head (K, V) lives in one tile and the (K, V) state
    # in registers, which suits LinRec's small heads (16-64)
    return block_n, max(16, triton.next_power_of_2(K)), max(16, triton.next_power_of_2(V))


def _scale_tensor(scale: float, like: torch.Tensor) -> torch.Tensor:
    # a float argument would reach the kernel as float32; a one-element tensor keeps float64 exact
    return torch.full((1,), scale, dtype=like.dtype, device=like.device)


def _causal_fwd(q, k, v, scale, block_n=None):
    """q, k: (B H N K), v: (B H N V), contiguous, float32/float64 -> out: (B H N V)."""
    B, H, N, K = q.shape
    V = v.shape[-1]
    out = torch.empty_like(v)
    if out.numel() == 0:
        return out
    block_n, block_k, block_v = _blocks(N, K, V, block_n)
    _causal_fwd_kernel[(B * H,)](
        q, k, v, out, N, K, V, _scale_tensor(scale, q),
        BLOCK_N=block_n, BLOCK_K=block_k, BLOCK_V=block_v,
    )
    return out


def _causal_bwd(q, k, v, grad_out, scale, block_n=None):
    """Returns dq, dk, dv for grad_out: (B H N V)."""
    B, H, N, K = q.shape
    V = v.shape[-1]
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    if q.numel() == 0 or v.numel() == 0:
        return dq.zero_(), dk.zero_(), dv.zero_()
    block_n, block_k, block_v = _blocks(N, K, V, block_n)
    _causal_bwd_kernel[(B * H, 2)](
        q, k, v, grad_out, dq, dk, dv, N, K, V, _scale_tensor(scale, q),
        BLOCK_N=block_n, BLOCK_K=block_k, BLOCK_V=block_v,
    )
    return dq, dk, dv


class CausalLinearAttentionTriton(torch.autograd.Function):
    """Causal core ``out_t = scale * q_t sum_{i<=t} k_i v_i^T`` on feature-mapped q, k."""

    @staticmethod
    def forward(ctx, q, k, v, scale, block_n):
        out = _causal_fwd(q, k, v, scale, block_n)
        ctx.save_for_backward(q, k, v)
        ctx.scale = scale
        ctx.block_n = block_n
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v = ctx.saved_tensors
        dq, dk, dv = _causal_bwd(q, k, v, grad_out.contiguous(), ctx.scale, ctx.block_n)
        return dq, dk, dv, None, None


def linear_attention_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    causal: bool = False,
    eps: float = DEFAULT_EPS,
    block_n: Optional[int] = None,
) -> torch.Tensor:
    """LinRec attention with a Triton kernel for the causal core.

    Args:
        q: (B H N K).
        k: (B H N K).
        v: (B H N V).
        mask: bool (B N), True at real positions, or None (no padding mask).
            A masked position neither contributes nor receives: its output row is zero.
        causal: position t sees positions i <= t only (chunked Triton kernel);
            otherwise two PyTorch matmuls.
        eps: epsilon of the L2 normalisation in ``linrec_feature_map``.
        block_n: chunk length of the causal kernel (power of two, >= 16); None picks 64.

    Returns:
        (B H N V) in v's dtype; computed in float64 when given float64, else float32.

    Bytes moved by the causal core: the forward reads phi(q), phi(k), v once and
    writes out once; the feature map itself is a PyTorch pass over q and k.
    """
    if not HAS_TRITON:
        raise ImportError(_INSTALL_HINT)
    if q.dim() != 4 or k.shape != q.shape or v.shape[:3] != q.shape[:3]:
        raise ValueError(
            f"expected q, k: (B, H, N, K) and v: (B, H, N, V), got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    work = compute_dtype(q.dtype)
    scale = 1.0 / math.sqrt(q.shape[-1])
    q_hat = linrec_feature_map(q, eps).to(work)  # [B H N K]
    k_hat = linrec_feature_map(k, eps).to(work)
    v_w = v.to(work)
    if mask is not None:
        keep = mask.to(device=q.device, dtype=torch.bool)[:, None, :, None]  # [B 1 N 1]
        q_hat = q_hat.masked_fill(~keep, 0.0)
        k_hat = k_hat.masked_fill(~keep, 0.0)
    if causal:
        out = CausalLinearAttentionTriton.apply(
            q_hat.contiguous(), k_hat.contiguous(), v_w.contiguous(), scale, block_n
        )
    else:
        out = q_hat @ (k_hat.transpose(-1, -2) @ v_w) * scale  # [B H N V]
    return out.to(v.dtype)


def _ref(q, k, v, mask=None, causal=False, eps=DEFAULT_EPS):
    """The specification these kernels are tested against: ``reference.linear_attention_reference``."""
    return linear_attention_reference(q, k, v, mask=mask, causal=causal, eps=eps)
