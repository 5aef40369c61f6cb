"""Catalogue scoring + cross-entropy, ``loss = CE(h @ weight.T + bias, target)``, and its
dispatcher ``linear_cross_entropy``.

One file per implementation:
    reference.py   the plain form: full (N, V) logits, ``F.cross_entropy``, autograd (the specification)
    chunked.py     fused over row chunks: a custom autograd Function that never holds the full logits
                   (``chunked_bf16``: the same with its three products in bfloat16)
"""
import functools
from typing import Optional

import torch

from .chunked import DEFAULT_CHUNK_SIZE, linear_cross_entropy_chunked
from .reference import linear_cross_entropy_reference

LINEAR_CE_BACKENDS = ("auto", "chunked", "chunked_bf16", "reference")

_IMPLEMENTATIONS = {
    "chunked": linear_cross_entropy_chunked,
    "chunked_bf16": functools.partial(linear_cross_entropy_chunked, matmul_dtype=torch.bfloat16),
    "reference": linear_cross_entropy_reference,
}


def check_backend(backend: str) -> str:
    """``backend`` if it is a known name, else one ValueError listing the valid ones."""
    if backend not in LINEAR_CE_BACKENDS:
        raise ValueError(f"unknown linear_cross_entropy backend {backend!r}; valid values: {LINEAR_CE_BACKENDS}")
    return backend


def resolve_backend(device: torch.device, backend: str = "auto") -> str:
    """The implementation ``linear_cross_entropy`` runs on ``device`` for ``backend``.

    "auto": "chunked" on CPU (measured with benchmarks/bench_train_step.py: the fused form removes
    the passes over the (N, V) logits, which on a CPU cost about as much as the GEMMs, and uses the
    GEMM layout MKL runs fastest); "reference" elsewhere, where cuBLAS and fused softmax kernels
    already make the plain form cheap and a Python loop over chunks would only add launches.
    """
    check_backend(backend)
    if backend != "auto":
        return backend
    return "chunked" if torch.device(device).type == "cpu" else "reference"


def linear_cross_entropy(
    h: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    *,
    ignore_index: int = -100,
    backend: str = "auto",
) -> torch.Tensor:
    """Mean cross-entropy of the catalogue scores ``h @ weight.T + bias`` against ``target``.

    Args:
        h: r(N D) one query vector per scored position.
        weight: r(V D) the catalogue (item) embeddings.
        target: i(N) class ids in [0, V); ``ignore_index`` entries are left out of the mean.
        bias: r(V) per-item bias, or None.
        backend: one of ``LINEAR_CE_BACKENDS``: "reference" (plain, full logits), "chunked" (fused
            over row chunks, custom backward, same float32 arithmetic), "chunked_bf16" (the same with
            its products in bfloat16: faster on CPUs with AVX512-BF16, ~3e-3 relative gradient error)
            or "auto" (see :func:`resolve_backend`).
    Returns:
        r() the mean loss, NaN when every target is ignored (as ``F.cross_entropy``).
    """
    impl = _IMPLEMENTATIONS[resolve_backend(h.device, backend)]
    return impl(h, weight, target, bias, ignore_index=ignore_index)


__all__ = [
    "linear_cross_entropy",
    "LINEAR_CE_BACKENDS",
    "DEFAULT_CHUNK_SIZE",
    "check_backend",
    "resolve_backend",
    "linear_cross_entropy_reference",
    "linear_cross_entropy_chunked",
]
