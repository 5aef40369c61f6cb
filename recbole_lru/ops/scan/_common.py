"""Shared pieces of the LRU scan: input checks, dtype rules, powers of λ and the autograd Function.

Letters: B batch, L length, N recurrent width. ``c(...)`` is a complex tensor, ``b(...)`` a bool tensor.
"""
from typing import Callable, Optional

import torch

from ..utils import compute_dtype

# kernel(lam: c(N), x: c(B L N), reverse: bool) -> h: c(B L N), no autograd, same dtype as x.
# Forward (reverse=False):  h_t = lam * h_{t-1} + x_t,  h_{-1} = 0.
# Reverse (reverse=True):   h_t = lam * h_{t+1} + x_t,  h_{L} = 0.
# A kernel owns x: it may overwrite it and return it as h (saves allocating and touching a new buffer).
Kernel = Callable[[torch.Tensor, torch.Tensor, bool], torch.Tensor]

_COMPLEX = (torch.complex32, torch.complex64, torch.complex128)


def check_inputs(lam: torch.Tensor, x: torch.Tensor, mask: Optional[torch.Tensor]) -> None:
    """Raise one clear error when shapes or dtypes do not match the scan contract.

    Expected: lam c(N), x c(B L N), mask b(B L) or None, all on one device. Looks at metadata only.
    """
    if not isinstance(lam, torch.Tensor) or not isinstance(x, torch.Tensor):
        raise TypeError(
            f"lru_scan expects tensors lam c(N) and x c(B, L, N); got {type(lam).__name__} and {type(x).__name__}"
        )
    if lam.dtype not in _COMPLEX or x.dtype not in _COMPLEX:
        raise TypeError(
            "lru_scan expects complex lam (N,) and x (B, L, N) (complex32/64/128); "
            f"got lam {lam.dtype} and x {x.dtype}"
        )
    if x.dim() != 3 or lam.dim() != 1 or lam.shape[0] != x.shape[2]:
        raise ValueError(
            f"lru_scan expects lam of shape (N,) and x of shape (B, L, N); got lam {tuple(lam.shape)} "
            f"and x {tuple(x.shape)}"
        )
    if lam.device != x.device:
        raise ValueError(f"lru_scan expects lam and x on one device; got {lam.device} and {x.device}")
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            got = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise TypeError(f"lru_scan expects mask as a bool tensor of shape (B, L) or None; got {got}")
        if tuple(mask.shape) != tuple(x.shape[:2]):
            raise ValueError(
                f"lru_scan expects mask of shape (B, L) = {tuple(x.shape[:2])}; got {tuple(mask.shape)}"
            )
        if mask.device != x.device:
            raise ValueError(f"lru_scan expects mask on the device of x ({x.device}); got {mask.device}")


def apply_mask(x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """x c(B L N), mask b(B L) or None -> x with the padded positions zeroed, c(B L N)."""
    if mask is None:
        return x
    return x.masked_fill(~mask.unsqueeze(-1), 0)


def masked_buffer(x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """A new contiguous c(B L N) tensor holding mask * x, written in one pass (a kernel may overwrite it)."""
    buf = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if mask is None:
        return buf.copy_(x)
    return torch.where(mask.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device), out=buf)


def lam_powers(lam: torch.Tensor, n: int, start: int = 1) -> torch.Tensor:
    """lam c(N) -> [lam^start, ..., lam^(start+n-1)], c(n N) in the dtype of lam.

    Built by doubling (p[m:2m] = p[:m] * lam^m, the paper's Algorithm 1) in complex128, so that
    the rounding of the repeated products stays far below complex64 precision even for n in the
    thousands. Differentiable; |lam| < 1 means the powers can only underflow (to 0), never overflow.
    """
    lam64 = lam.to(torch.complex128)
    if n <= 0:
        return lam.new_zeros((0, lam.shape[0]))
    # p holds lam^1..lam^m
    p = lam64.unsqueeze(0)
    while p.shape[0] < start - 1 + n:
        p = torch.cat([p, p * p[-1:]], dim=0)
    if start == 0:
        p = torch.cat([torch.ones_like(lam64).unsqueeze(0), p], dim=0)
        return p[:n].to(lam.dtype)
    return p[start - 1:start - 1 + n].to(lam.dtype)


# bytes of the temporary product in _shifted_dot: small enough for the allocator to reuse it, while a
# temporary as large as x is a fresh mapping whose first touch costs more than the arithmetic
_DOT_BLOCK_BYTES = 4 << 20


def _shifted_dot(h: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """sum over b and t >= 1 of conj(h_{t-1}) * g_t.   h, g c(B L N) -> c(N)

    Taken over blocks of time steps, so the temporary product stays small.
    """
    B, L, N = h.shape
    out = h.new_zeros(N)
    step = max(1, _DOT_BLOCK_BYTES // max(1, B * N * h.element_size()))
    for start in range(1, L, step):
        stop = min(start + step, L)
        out += (h[:, start - 1:stop - 1].conj() * g[:, start:stop]).sum(dim=(0, 1))
    return out


class ScanFunction(torch.autograd.Function):
    """h = scan(lam, mask * x) with a backward that is itself a scan, run in reverse with conj(lam).

    With PyTorch's convention (the gradient of a real loss w.r.t. a complex z is dloss/d(conj z)):
        g~_t   = g_t + conj(lam) * g~_{t+1},  g~_L = 0      (reverse scan of the incoming gradient g)
        grad_x = mask * g~
        grad_lam = sum_{b, t >= 1} conj(h_{t-1}) * g~_t
    The forward and the reverse scan use the same kernel, so any kernel gives a cheap backward.
    """

    @staticmethod
    def forward(ctx, lam: torch.Tensor, x: torch.Tensor, mask: Optional[torch.Tensor], kernel: Kernel):
        with torch.no_grad():
            h = kernel(lam, masked_buffer(x, mask), False)
        ctx.kernel = kernel
        ctx.save_for_backward(lam, h, mask)
        return h

    @staticmethod
    def backward(ctx, grad_h: torch.Tensor):
        lam, h, mask = ctx.saved_tensors
        grad_lam = grad_x = None
        # g~ c(B L N)
        g = ctx.kernel(lam.conj().resolve_conj(), masked_buffer(grad_h, None), True)
        if ctx.needs_input_grad[0]:
            grad_lam = _shifted_dot(h, g)
        if ctx.needs_input_grad[1]:
            grad_x = g if mask is None else g.masked_fill_(~mask.unsqueeze(-1), 0)
        return grad_lam, grad_x, None, None


def scan_with_kernel(lam: torch.Tensor, x: torch.Tensor, mask: Optional[torch.Tensor], kernel: Kernel) -> torch.Tensor:
    """Run ``kernel`` through ScanFunction in the compute dtype and return the dtype of x.

    lam c(N), x c(B L N), mask b(B L) or None -> h c(B L N).
    """
    check_inputs(lam, x, mask)
    dtype = compute_dtype(lam.dtype, x.dtype)
    h = ScanFunction.apply(lam.to(dtype), x.to(dtype), mask, kernel)
    return h.to(x.dtype)
