"""The LRU scan in chunks: a Toeplitz matmul inside each chunk, a short scan across chunks.

Cut the (right-padded) sequence into K chunks of C steps. Inside chunk k, with h_{k,-1} = 0,
    y_{k,i} = sum_{j <= i} lam^(i-j) x_{k,j}          (one matmul with T[i, j] = lam^(i-j), i >= j)
The chunk-final states S_k = y_{k,C-1} are carried across chunks by a K-step scan with lam^C,
    E_k = lam^C E_{k-1} + S_k,
and each chunk gets the carry of the previous ones:  h_{k,i} = y_{k,i} + lam^(i+1) E_{k-1}.
Only lam^0 .. lam^C are ever formed, so long sequences with |lam| near 1 stay accurate.
"""
import functools
from typing import Optional

import torch
import torch.nn.functional as F

from ..utils import compute_dtype
from ._common import apply_mask, check_inputs, lam_powers, scan_with_kernel
from .sequential import sequential_scan_kernel

CHUNK = 32


def _toeplitz(pw: torch.Tensor, C: int, reverse: bool) -> torch.Tensor:
    """pw c(C+1 N) = lam^0..lam^C -> T c(N C C), T[n, i, j] = lam_n^(i-j) for i >= j, else 0.

    reverse=True gives the transpose (lam^(j-i) for j >= i), the kernel of the backward scan.
    """
    steps = torch.arange(C, device=pw.device)
    diff = steps.unsqueeze(1) - steps.unsqueeze(0)  # [C C], i - j
    if reverse:
        diff = -diff
    T = pw[diff.clamp(min=0)]  # [C C N]
    T = T.masked_fill((diff < 0).unsqueeze(-1), 0)
    return T.permute(2, 0, 1)


def chunked_scan_kernel(lam: torch.Tensor, x: torch.Tensor, reverse: bool = False, chunk: int = CHUNK) -> torch.Tensor:
    """Chunked scan, no autograd.

    lam c(N), x c(B L N) (already masked, the dtype of lam, contiguous) -> h c(B L N), written over x.
    reverse=True scans from the end: transposed Toeplitz blocks and a backward carry.
    """
    B, L, N = x.shape
    if L <= 1:
        return x
    C = min(chunk, L)
    K = -(-L // C)
    if K * C != L:
        x = F.pad(x, (0, 0, 0, K * C - L))
    # pw c(C+1 N): lam^0 .. lam^C
    pw = lam_powers(lam, C + 1, start=0)
    T = _toeplitz(pw, C, reverse)
    # intra-chunk matmul per n: [N C C] @ [N C (B K)] -> [N C (B K)]
    xs = x.view(B, K, C, N).permute(3, 2, 0, 1).reshape(N, C, B * K)
    y = torch.bmm(T, xs).view(N, C, B, K).permute(2, 3, 1, 0)  # [B K C N], strided
    h = x.view(B, K, C, N)
    h.copy_(y)
    if K > 1:
        # carry of the chunk states across chunks, then add lam^(i+1) (or lam^(C-i)) times it
        if reverse:
            ends = sequential_scan_kernel(pw[C], h[:, :, 0].clone(), True)  # [B K N]
            h[:, :-1].addcmul_(pw[1:].flip(0), ends[:, 1:].unsqueeze(2))
        else:
            ends = sequential_scan_kernel(pw[C], h[:, :, C - 1].clone(), False)  # [B K N]
            h[:, 1:].addcmul_(pw[1:], ends[:, :-1].unsqueeze(2))
    h = h.view(B, K * C, N)
    return h if K * C == L else h[:, :L]


def lru_scan_chunked(
    lam: torch.Tensor, x: torch.Tensor, mask: Optional[torch.Tensor] = None, chunk: int = CHUNK
) -> torch.Tensor:
    """LRU scan in chunks of ``chunk`` steps, with a custom backward (the transposed chunked scan).

    Args:
        lam: c(N); x: c(B L N); mask: b(B L) True at real positions, or None; chunk: steps per chunk.

    Returns:
        h: c(B L N) in the dtype of x, h_t = lam * h_{t-1} + mask_t * x_t. Gradients flow to lam and x.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be a positive number of steps; got {chunk}")
    kernel = chunked_scan_kernel if chunk == CHUNK else functools.partial(chunked_scan_kernel, chunk=chunk)
    return scan_with_kernel(lam, x, mask, kernel)


def lru_scan_chunked_autograd(
    lam: torch.Tensor, x: torch.Tensor, mask: Optional[torch.Tensor] = None, chunk: int = CHUNK
) -> torch.Tensor:
    """The chunked form with out-of-place ops and gradients by autograd; same contract as ``lru_scan_chunked``."""
    check_inputs(lam, x, mask)
    if chunk < 1:
        raise ValueError(f"chunk must be a positive number of steps; got {chunk}")
    dtype = compute_dtype(lam.dtype, x.dtype)
    lam_c = lam.to(dtype)
    xm = apply_mask(x.to(dtype), mask)
    B, L, N = xm.shape
    if L <= 1:
        return xm.to(x.dtype)
    C = min(chunk, L)
    K = -(-L // C)
    xm = F.pad(xm, (0, 0, 0, K * C - L)).reshape(B, K, C, N)
    pw = lam_powers(lam_c, C + 1, start=0)
    y = torch.einsum("nij,bkjn->bkin", _toeplitz(pw, C, False), xm)  # [B K C N]
    ends = []
    end = torch.zeros_like(y[:, 0, 0])
    for k in range(K - 1):
        end = pw[C] * end + y[:, k, C - 1]
        ends.append(end)
    if ends:
        carry = torch.stack(ends, dim=1).unsqueeze(2)  # [B K-1 1 N]
        y = torch.cat([y[:, :1], y[:, 1:] + pw[1:] * carry], dim=1)
    return y.reshape(B, K * C, N)[:, :L].to(x.dtype)
