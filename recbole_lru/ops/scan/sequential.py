"""The LRU scan as a loop over time with one fused multiply-add per step and a reverse-scan backward.

On a CPU this is the fastest form measured (``benchmarks/bench_scan.py``): each step is one
``addcmul`` over a (B, N) slice, so the loop does the minimum arithmetic; the parallel forms pay
for extra passes. Autograd never sees the loop: the backward is the same loop run in reverse
(see ``ScanFunction``), instead of one autograd node per step.
"""
from typing import Optional

import torch

from ..utils import is_compiling
from ._common import scan_with_kernel


def _sequential_scan_out_of_place(lam: torch.Tensor, x: torch.Tensor, reverse: bool) -> torch.Tensor:
    """The same recurrence with one new tensor per step. lam c(N), x c(B L N) -> h c(B L N)."""
    L = x.shape[1]
    order = range(L - 1, -1, -1) if reverse else range(L)
    h = torch.zeros_like(x[:, 0])
    states = [h] * L
    for t in order:
        h = lam * h + x[:, t]
        states[t] = h
    return torch.stack(states, dim=1) if L else x


def sequential_scan_kernel(lam: torch.Tensor, x: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """h_t = lam * h_{t-1} + x_t (reverse: h_t = lam * h_{t+1} + x_t), no autograd.

    lam c(N), x c(B L N) (already masked, the dtype of lam) -> h c(B L N), written over x.
    Every step updates its slice in place, so no per-step tensors are allocated.
    """
    L = x.shape[1]
    if is_compiling():
        # torch.compile cannot trace writes into strided slices: build the steps out of place
        return _sequential_scan_out_of_place(lam, x, reverse)
    h = x
    if reverse:
        for t in range(L - 2, -1, -1):
            torch.addcmul(h[:, t], h[:, t + 1], lam, out=h[:, t])
    else:
        for t in range(1, L):
            torch.addcmul(h[:, t], h[:, t - 1], lam, out=h[:, t])
    return h


def lru_scan_sequential(lam: torch.Tensor, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """LRU scan, loop over time, with a custom backward (a reverse loop with conj(lam)).

    Args:
        lam: c(N); x: c(B L N); mask: b(B L) True at real positions, or None.

    Returns:
        h: c(B L N) in the dtype of x, h_t = lam * h_{t-1} + mask_t * x_t. Gradients flow to lam and x.
    """
    return scan_with_kernel(lam, x, mask, sequential_scan_kernel)
