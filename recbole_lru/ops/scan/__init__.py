"""The LRU scan h_t = lam * h_{t-1} + mask_t * x_t and its dispatcher ``lru_scan``.

One file per implementation, each exporting the function named after it (``lru_scan_<file>``):
    reference.py   lru_scan_reference: the time loop with autograd through it (the specification)
    sequential.py  lru_scan_sequential: the time loop, fused multiply-add per step, reverse-scan backward
    parallel.py    lru_scan_parallel: the paper's recursive parallelization (Algorithm 1, eq. 6)
    chunked.py     lru_scan_chunked: Toeplitz matmul inside chunks, a short scan across chunks
    triton.py      lru_scan_triton: a GPU kernel (optional)
``_common.py`` holds the input checks and the autograd Function the fast forms share.

The environment variable ``RECBOLE_LRU_SCAN_BACKEND`` replaces "auto" (``RECBOLE_LRU_BACKEND``
too, when it names a scan backend; see :mod:`recbole_lru.ops.utils`).
"""
from typing import Optional

import torch

from ..utils import backend_from_env, is_compiling
from ._common import check_inputs
from .chunked import lru_scan_chunked
from .parallel import lru_scan_parallel
from .reference import lru_scan_ref, lru_scan_reference
from .sequential import lru_scan_sequential

try:
    from . import triton as _triton_backend
except ImportError:  # the kernel file is not there
    _triton_backend = None
# None when the triton package is missing: "auto" then never picks it and "triton" fails with a hint
lru_scan_triton = (
    _triton_backend.lru_scan_triton
    if _triton_backend is not None and getattr(_triton_backend, "HAS_TRITON", True)
    else None
)

SCAN_BACKENDS = ("auto", "sequential", "parallel", "chunked", "triton", "reference")
ENV_BACKEND = "RECBOLE_LRU_SCAN_BACKEND"

# CPU rule, measured with benchmarks/bench_scan.py and a sweep of B*N in 256..16384, L in 50..4096:
# the time loop costs L * (per-step overhead + B*N work), the recursive parallelization about
# log2(P) passes of (P/2) * B*N work. The loop wins once one step carries enough work to hide its
# overhead, from B*N = 2048 on, at every L and both with and without gradients (the custom backward
# of either is one more scan of the same kind). The chunked matmul form lost at every CPU point.
_SEQUENTIAL_MIN_WIDTH = 2048

_IMPLEMENTATIONS = {
    "sequential": lru_scan_sequential,
    "parallel": lru_scan_parallel,
    "chunked": lru_scan_chunked,
    "reference": lru_scan_reference,
}


def _check_backend(backend: str, source: str) -> None:
    if backend not in SCAN_BACKENDS:
        raise ValueError(f"unknown lru_scan backend {backend!r} (from {source}); valid values: {SCAN_BACKENDS}")


def _auto_backend(lam: torch.Tensor, x: torch.Tensor) -> str:
    """Pick a backend from the device, the shapes and the tracing state only (never from tensor values).

    Whether gradients are needed does not change the choice: every torch backend runs its own kind
    of scan backwards, so the measured ranking is the same for forward and forward+backward.
    """
    B, L, N = x.shape
    if x.device.type == "cuda":
        return "triton" if lru_scan_triton is not None else "chunked"
    if is_compiling():
        return "parallel"
    if B * N >= _SEQUENTIAL_MIN_WIDTH:
        return "sequential"
    return "parallel"


def resolve_backend(lam: torch.Tensor, x: torch.Tensor, backend: str = "auto") -> str:
    """The backend ``lru_scan`` would run for these inputs: ``RECBOLE_LRU_SCAN_BACKEND`` replaces "auto"."""
    _check_backend(backend, "the backend argument")
    if backend == "auto":
        backend = backend_from_env(ENV_BACKEND, SCAN_BACKENDS) or "auto"
    if backend == "auto":
        backend = _auto_backend(lam, x)
    return backend


def lru_scan(
    lam: torch.Tensor, x: torch.Tensor, mask: Optional[torch.Tensor] = None, backend: str = "auto"
) -> torch.Tensor:
    """Diagonal complex linear recurrence over time.

        h_t = lam * h_{t-1} + mask_t * x_t,   h_{-1} = 0

    At a padded position (mask_t False) the input is ignored and the state still decays by lam.

    Args:
        lam: c(N), the diagonal (|lam| < 1). Gradients flow to it (PyTorch's complex convention).
        x: c(B L N), complex32/64/128. Computed in complex64 at least (complex128 if given).
        mask: b(B L), True at real positions; None means all real.
        backend: one of ``SCAN_BACKENDS``:
            "sequential"  loop over time, backward = reverse loop with conj(lam)
            "parallel"    the paper's recursive parallelization, backward = the same passes reversed
            "chunked"     Toeplitz matmul per chunk + a scan across chunks, transposed for the backward
            "triton"      the GPU kernel (``lru_scan_triton``); needs triton
            "reference"   the plain loop with autograd through every step (slow, the spec)
            "auto"        the environment variable ``RECBOLE_LRU_SCAN_BACKEND`` if set, else:
                          CUDA:  "triton" when importable, else "chunked";
                          CPU under torch.compile: "parallel" (log2 L ops, no per-step graph);
                          CPU:   "sequential" when B * N >= 2048 (each step then hides its Python
                                 overhead; fastest forward and forward+backward measured), else "parallel"
                                 (log2 L passes beat L tiny steps). The same with or without gradients:
                                 each backend's backward is its own scan run in reverse.

    Returns:
        h: c(B L N) in the dtype of x.
    """
    check_inputs(lam, x, mask)
    name = resolve_backend(lam, x, backend)
    if name == "triton":
        if lru_scan_triton is None:
            raise RuntimeError(
                "lru_scan backend 'triton' is not available: install it with `pip install -e .[triton]` "
                "(it needs a CUDA GPU, or TRITON_INTERPRET=1 on a CPU)"
            )
        return lru_scan_triton(lam, x, mask)
    return _IMPLEMENTATIONS[name](lam, x, mask)


__all__ = ["lru_scan", "SCAN_BACKENDS", "ENV_BACKEND", "resolve_backend", "lru_scan_reference",
           "lru_scan_sequential", "lru_scan_parallel", "lru_scan_chunked", "lru_scan_triton", "lru_scan_ref"]
