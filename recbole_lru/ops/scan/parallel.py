"""The paper's recursive parallelization of the LRU scan (LRURec, Algorithm 1 and eq. 6).

eq. 6 splits a sequence at k:  h_t = lam^(t-k) h_k + sum_{i=k+1..t} lam^(t-i) x_i.
Pad the length to P = 2^ceil(log2 L); at pass i = 1..log2 P cut the sequence into blocks of
l = 2^i and add [lam, lam^2, ..., lam^(l/2)] * (last state of the left half) to the right half.
After log2 P passes every position holds the full recurrence. Padding goes on the right: h is
causal, so zeros after the end change nothing before it (the paper pads on the left, which is
equivalent because h_{-1} = 0).
"""
from typing import Optional

import torch
import torch.nn.functional as F

from ..utils import compute_dtype
from ._common import apply_mask, check_inputs, lam_powers, scan_with_kernel


def _padded_length(L: int) -> int:
    """Smallest power of two >= L (1 for L <= 1)."""
    return 1 << max(L - 1, 0).bit_length()


def parallel_scan_kernel(lam: torch.Tensor, x: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """Recursive parallelization, in place, no autograd.

    lam c(N), x c(B L N) (already masked, the dtype of lam, contiguous) -> h c(B L N), written over x.
    reverse=True scans from the end (h_t = lam * h_{t+1} + x_t): each pass adds
    [lam^(l/2), ..., lam] * (first state of the right half) to the left half instead.
    """
    B, L, N = x.shape
    P = _padded_length(L)
    if P <= 1:
        return x
    h = x if P == L else F.pad(x, (0, 0, 0, P - L))
    # pw c(P/2 N): lam^1 .. lam^(P/2)
    pw = lam_powers(lam, P // 2)
    rpw = pw.flip(0) if reverse else pw
    half = 1
    while half < P:
        # blocks c(B, P/l, l, N) with l = 2 * half
        blocks = h.view(B, P // (2 * half), 2 * half, N)
        if reverse:
            blocks[:, :, :half].addcmul_(rpw[P // 2 - half:], blocks[:, :, half:half + 1])
        else:
            blocks[:, :, half:].addcmul_(pw[:half], blocks[:, :, half - 1:half])
        half *= 2
    return h if P == L else h[:, :L]


def lru_scan_parallel(lam: torch.Tensor, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """LRU scan by recursive parallelization, with a custom backward (the same passes run in reverse).

    Args:
        lam: c(N); x: c(B L N); mask: b(B L) True at real positions, or None.

    Returns:
        h: c(B L N) in the dtype of x, h_t = lam * h_{t-1} + mask_t * x_t. Gradients flow to lam and x.
    """
    return scan_with_kernel(lam, x, mask, parallel_scan_kernel)


def lru_scan_parallel_autograd(
    lam: torch.Tensor, x: torch.Tensor, mask: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Algorithm 1 as the paper trains it: out-of-place passes, gradients by autograd through them.

    Same contract as ``lru_scan_parallel``; kept as the paper's training baseline and as an
    independent check of the custom backward.
    """
    check_inputs(lam, x, mask)
    dtype = compute_dtype(lam.dtype, x.dtype)
    lam_c = lam.to(dtype)
    h = apply_mask(x.to(dtype), mask)
    B, L, N = h.shape
    P = _padded_length(L)
    if P <= 1:
        return h.to(x.dtype)
    h = F.pad(h, (0, 0, 0, P - L))
    pw = lam_powers(lam_c, P // 2)
    half = 1
    while half < P:
        blocks = h.reshape(B, P // (2 * half), 2 * half, N)
        left, right = blocks[:, :, :half], blocks[:, :, half:]
        right = right + pw[:half] * left[:, :, half - 1:half]
        h = torch.cat([left, right], dim=2).reshape(B, P, N)
        half *= 2
    return h[:, :L].to(x.dtype)
