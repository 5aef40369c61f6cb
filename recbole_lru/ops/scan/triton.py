"""Triton kernels for the masked complex diagonal recurrence.

    h_t = lam * h_{t-1} + mask_t * x_t,    h_{-1} = 0

Complex numbers travel as (real, imaginary) float pairs (``torch.view_as_real``),
so the kernels never see a complex dtype. One program owns a tile of
(one batch row, BLOCK_N channels) and walks the sequence in blocks of BLOCK_L
steps. Inside a block the recurrence is solved with ``tl.associative_scan`` on
affine pairs (a, b), meaning h -> a * h + b, combined as

    (a1, b1) then (a2, b2) = (a2 * a1, a2 * b1 + b2);

the scan gives, for every row, lam^(k+1) and the block-local state, and the state
carried in from the previous block is added as lam^(k+1) * carry. The last row
becomes the next carry, so x is read once and h written once.

The backward pass is the same scan run from the end of the sequence with conj(lam)
(PyTorch's convention: the gradient of a real loss w.r.t. a complex z is dL/d(conj z)):

    g~_t    = g_t + conj(lam) * g~_{t+1}
    grad_x  = mask * g~
    grad_lam = sum_{b,t} conj(h_{t-1}) * g~_t

Precision: complex64 runs in float32, complex128 (either input) in float64; complex32
is upcast to complex64 and the result cast back to the dtype of x (``ops.utils.compute_dtype``).

Memory traffic per call, with E = B*L*N complex elements of ``e`` bytes each
(8 for complex64) and a bool mask of B*L bytes:

    forward:  reads x once (E*e) + mask (B*L), writes h once (E*e)          ~ 2*E*e
    backward: reads grad_h and h (2*E*e) + mask, writes grad_x (E*e) and
              a (B, N) partial grad_lam that is summed over B in torch      ~ 3*E*e
"""
from __future__ import annotations

from typing import Optional

import torch

from ..utils import compute_dtype
from ._common import check_inputs
from .reference import lru_scan_reference

try:
    import triton
    import triton.language as tl
except ImportError:  # optional dependency
    triton = None
    tl = None

HAS_TRITON = triton is not None

__all__ = ["lru_scan_triton", "HAS_TRITON"]

_INSTALL_HINT = (
    "the Triton backend of lru_scan needs the `triton` package: "
    "install it with `pip install -e .[triton]`"
)


if HAS_TRITON:

    @triton.jit
    def _affine_combine(a1_re, a1_im, b1_re, b1_im, a2_re, a2_im, b2_re, b2_im):
        # apply (a1, b1) first, then (a2, b2): h -> a2 * (a1 * h + b1) + b2
        a_re = a2_re * a1_re - a2_im * a1_im
        a_im = a2_re * a1_im + a2_im * a1_re
        b_re = a2_re * b1_re - a2_im * b1_im + b2_re
        b_im = a2_re * b1_im + a2_im * b1_re + b2_im
        return a_re, a_im, b_re, b_im

    @triton.jit
    def _lru_scan_fwd_kernel(
        x_ptr,  # float view of x: [B L N 2]
        lam_ptr,  # float view of lam: [N 2]
        mask_ptr,  # bool [B L] (unused if not HAS_MASK)
        h_ptr,  # float view of h: [B L N 2]
        L,
        N,
        HAS_MASK: tl.constexpr,
        BLOCK_L: tl.constexpr,
        BLOCK_N: tl.constexpr,
    ):
        pid_b = tl.program_id(0).to(tl.int64)
        pid_n = tl.program_id(1)
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # [BN]
        n_ok = offs_n < N
        lam_re = tl.load(lam_ptr + offs_n * 2, mask=n_ok, other=0.0)
        lam_im = tl.load(lam_ptr + offs_n * 2 + 1, mask=n_ok, other=0.0)
        dtype = lam_re.dtype
        zero = tl.zeros((BLOCK_L, BLOCK_N), dtype)
        a_re = zero + lam_re[None, :]  # [BL BN]
        a_im = zero + lam_im[None, :]
        rows = tl.arange(0, BLOCK_L)  # [BL]
        carry_re = tl.zeros((BLOCK_N,), dtype)
        carry_im = tl.zeros((BLOCK_N,), dtype)
        row_base = pid_b * L
        for start in range(0, L, BLOCK_L):
            offs_t = start + rows
            t_ok = offs_t < L
            tile_ok = t_ok[:, None] & n_ok[None, :]
            offs = ((row_base + offs_t)[:, None] * N + offs_n[None, :]) * 2  # [BL BN]
            x_re = tl.load(x_ptr + offs, mask=tile_ok, other=0.0)
            x_im = tl.load(x_ptr + offs + 1, mask=tile_ok, other=0.0)
            if HAS_MASK:
                keep = tl.load(mask_ptr + row_base + offs_t, mask=t_ok, other=0) != 0
                x_re = tl.where(keep[:, None], x_re, 0.0)
                x_im = tl.where(keep[:, None], x_im, 0.0)
            p_re, p_im, s_re, s_im = tl.associative_scan(
                (a_re, a_im, x_re, x_im), 0, _affine_combine
            )
            # p = lam^(k+1), s = block-local state; add the carried-in state
            h_re = s_re + p_re * carry_re[None, :] - p_im * carry_im[None, :]
            h_im = s_im + p_re * carry_im[None, :] + p_im * carry_re[None, :]
            tl.store(h_ptr + offs, h_re, mask=tile_ok)
            tl.store(h_ptr + offs + 1, h_im, mask=tile_ok)
            is_last = (rows == BLOCK_L - 1)[:, None]
            carry_re = tl.sum(tl.where(is_last, h_re, 0.0), axis=0)
            carry_im = tl.sum(tl.where(is_last, h_im, 0.0), axis=0)

    @triton.jit
    def _lru_scan_bwd_kernel(
        g_ptr,  # float view of grad_h: [B L N 2]
        h_ptr,  # float view of h: [B L N 2]
        lam_ptr,  # float view of lam: [N 2]
        mask_ptr,  # bool [B L]
        gx_ptr,  # float view of grad_x: [B L N 2]
        glam_ptr,  # float partial grad_lam: [B N 2]
        L,
        N,
        HAS_MASK: tl.constexpr,
        BLOCK_L: tl.constexpr,
        BLOCK_N: tl.constexpr,
    ):
        pid_b = tl.program_id(0).to(tl.int64)
        pid_n = tl.program_id(1)
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        n_ok = offs_n < N
        lam_re = tl.load(lam_ptr + offs_n * 2, mask=n_ok, other=0.0)
        lam_im = tl.load(lam_ptr + offs_n * 2 + 1, mask=n_ok, other=0.0)
        dtype = lam_re.dtype
        zero = tl.zeros((BLOCK_L, BLOCK_N), dtype)
        a_re = zero + lam_re[None, :]  # conj(lam)
        a_im = zero - lam_im[None, :]
        rows = tl.arange(0, BLOCK_L)
        carry_re = tl.zeros((BLOCK_N,), dtype)
        carry_im = tl.zeros((BLOCK_N,), dtype)
        acc_re = tl.zeros((BLOCK_N,), dtype)
        acc_im = tl.zeros((BLOCK_N,), dtype)
        row_base = pid_b * L
        for start in range(0, L, BLOCK_L):
            # row k of this block is time L-1-start-k: the scan runs backwards in time
            offs_t = L - 1 - start - rows
            t_ok = offs_t >= 0
            tile_ok = t_ok[:, None] & n_ok[None, :]
            offs = ((row_base + offs_t)[:, None] * N + offs_n[None, :]) * 2
            g_re = tl.load(g_ptr + offs, mask=tile_ok, other=0.0)
            g_im = tl.load(g_ptr + offs + 1, mask=tile_ok, other=0.0)
            p_re, p_im, s_re, s_im = tl.associative_scan(
                (a_re, a_im, g_re, g_im), 0, _affine_combine
            )
            gt_re = s_re + p_re * carry_re[None, :] - p_im * carry_im[None, :]
            gt_im = s_im + p_re * carry_im[None, :] + p_im * carry_re[None, :]
            if HAS_MASK:
                keep = tl.load(mask_ptr + row_base + offs_t, mask=t_ok, other=0) != 0
                gx_re = tl.where(keep[:, None], gt_re, 0.0)
                gx_im = tl.where(keep[:, None], gt_im, 0.0)
            else:
                gx_re = gt_re
                gx_im = gt_im
            tl.store(gx_ptr + offs, gx_re, mask=tile_ok)
            tl.store(gx_ptr + offs + 1, gx_im, mask=tile_ok)
            # grad_lam += conj(h_{t-1}) * g~_t, with h_{-1} = 0
            prev_ok = tile_ok & (offs_t >= 1)[:, None]
            offs_prev = offs - N * 2
            hp_re = tl.load(h_ptr + offs_prev, mask=prev_ok, other=0.0)
            hp_im = tl.load(h_ptr + offs_prev + 1, mask=prev_ok, other=0.0)
            acc_re += tl.sum(hp_re * gt_re + hp_im * gt_im, axis=0)
            acc_im += tl.sum(hp_re * gt_im - hp_im * gt_re, axis=0)
            is_last = (rows == BLOCK_L - 1)[:, None]
            carry_re = tl.sum(tl.where(is_last, gt_re, 0.0), axis=0)
            carry_im = tl.sum(tl.where(is_last, gt_im, 0.0), axis=0)
        offs_acc = (pid_b * N + offs_n) * 2
        tl.store(glam_ptr + offs_acc, acc_re, mask=n_ok)
        tl.store(glam_ptr + offs_acc + 1, acc_im, mask=n_ok)


def _launch_shape(L: int, N: int, block_l: Optional[int], block_n: Optional[int]):
    if block_l is None:
        block_l = min(64, max(16, triton.next_power_of_2(L)))
    if block_n is None:
        block_n = min(32, max(16, triton.next_power_of_2(N)))
    return block_l, block_n


def _lru_scan_fwd(lam, x, mask, block_l=None, block_n=None):
    """lam: c(N), x: c(B L N) contiguous, mask: bool(B L) contiguous or None -> h: c(B L N)."""
    B, L, N = x.shape
    h = torch.empty_like(x)
    if x.numel() == 0:
        return h
    block_l, block_n = _launch_shape(L, N, block_l, block_n)
    grid = (B, triton.cdiv(N, block_n))
    _lru_scan_fwd_kernel[grid](
        torch.view_as_real(x),
        torch.view_as_real(lam),
        mask if mask is not None else torch.view_as_real(x),  # placeholder, never read
        torch.view_as_real(h),
        L,
        N,
        HAS_MASK=mask is not None,
        BLOCK_L=block_l,
        BLOCK_N=block_n,
    )
    return h


def _lru_scan_bwd(lam, h, mask, grad_h, block_l=None, block_n=None):
    """Returns grad_lam: c(N) and grad_x: c(B L N) for grad_h: c(B L N)."""
    B, L, N = h.shape
    grad_x = torch.empty_like(h)
    if h.numel() == 0:
        return torch.zeros_like(lam), grad_x
    partial = torch.empty(B, N, 2, dtype=torch.view_as_real(h).dtype, device=h.device)
    block_l, block_n = _launch_shape(L, N, block_l, block_n)
    grid = (B, triton.cdiv(N, block_n))
    _lru_scan_bwd_kernel[grid](
        torch.view_as_real(grad_h),
        torch.view_as_real(h),
        torch.view_as_real(lam),
        mask if mask is not None else torch.view_as_real(h),  # placeholder, never read
        torch.view_as_real(grad_x),
        partial,
        L,
        N,
        HAS_MASK=mask is not None,
        BLOCK_L=block_l,
        BLOCK_N=block_n,
    )
    grad_lam = torch.view_as_complex(partial.sum(0).contiguous())
    return grad_lam, grad_x


class LRUScanTriton(torch.autograd.Function):
    """Autograd wrapper; both passes are single Triton launches."""

    @staticmethod
    def forward(ctx, lam, x, mask, block_l, block_n):
        h = _lru_scan_fwd(lam, x, mask, block_l, block_n)
        ctx.save_for_backward(lam, h, mask)
        ctx.blocks = (block_l, block_n)
        return h

    @staticmethod
    def backward(ctx, grad_h):
        lam, h, mask = ctx.saved_tensors
        grad_lam, grad_x = _lru_scan_bwd(lam, h, mask, grad_h.contiguous(), *ctx.blocks)
        return (
            grad_lam if ctx.needs_input_grad[0] else None,
            grad_x if ctx.needs_input_grad[1] else None,
            None,
            None,
            None,
        )


def lru_scan_triton(
    lam: torch.Tensor,
    x: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    block_l: Optional[int] = None,
    block_n: Optional[int] = None,
) -> torch.Tensor:
    """Masked complex diagonal recurrence as one Triton kernel per pass.

    Args:
        lam: c(N) complex decay per channel.
        x: c(B L N) complex input.
        mask: bool(B L), True at real positions; None means all real. At a masked
            position the input is dropped and the state still decays by ``lam``.
        block_l, block_n: tile sizes (powers of two, at least 16); None picks them.

    Returns:
        h: c(B L N), same dtype as ``x``; ``h_t = lam * h_{t-1} + mask_t * x_t``.

    Bytes moved: the forward reads x once plus the mask and writes h once
    (about 2 * B*L*N * 8 bytes for complex64); the backward reads grad_h and h and
    writes grad_x (about 3 * B*L*N * 8 bytes).
    """
    if not HAS_TRITON:
        raise ImportError(_INSTALL_HINT)
    check_inputs(lam, x, mask)
    work_dtype = compute_dtype(lam.dtype, x.dtype)
    # casts stay outside the autograd.Function so autograd maps gradients back to the input dtypes
    lam_w = lam.to(work_dtype).contiguous()
    x_w = x.to(work_dtype).contiguous()
    mask_w = mask.contiguous() if mask is not None else None
    h = LRUScanTriton.apply(lam_w, x_w, mask_w, block_l, block_n)
    return h.to(x.dtype)


def _ref(lam: torch.Tensor, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The specification these kernels are tested against: ``reference.lru_scan_reference``."""
    return lru_scan_reference(lam, x, mask)
