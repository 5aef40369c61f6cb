"""LinRec linear attention (ELU + L2-normalised q and k, K^T V first) and its dispatcher
``linear_attention``.

One file per implementation, each exporting the function named after it:

* ``reference.py``: ``linear_attention_reference``, the materialised O(N^2) form (the spec).
* ``chunked.py``: ``linear_attention_chunked``, O(N K V) in PyTorch, causal form chunk-wise;
  backend ``"torch"`` (runs anywhere).
* ``triton.py``: ``linear_attention_triton``, fused kernels (CUDA, or CPU under
  ``TRITON_INTERPRET=1``); uses the feature map's ``DEFAULT_EPS``.
* ``step.py``: ``linear_attention_step``, one token at a time, for incremental inference.

``feature_map.py`` holds the feature map every implementation shares.

Backends of ``linear_attention``: ``"torch"``, ``"triton"``, ``"reference"`` and ``"auto"``
(default): ``"triton"`` for CUDA tensors when the Triton backend imports and eps is the default,
``"torch"`` otherwise. The environment variable ``RECBOLE_LRU_ATTENTION_BACKEND`` overrides
``"auto"`` (never an explicit choice); ``RECBOLE_LRU_BACKEND`` does too when it names one of this
op's backends (its scan-only values leave this op on "auto"; see :mod:`recbole_lru.ops.utils`).
Any other value, like any unknown ``backend`` argument, raises ValueError.
"""
import torch

from ..utils import backend_from_env
from .chunked import DEFAULT_CHUNK_SIZE, linear_attention_chunked, linear_attention_torch
from .feature_map import DEFAULT_EPS, linrec_feature_map
from .reference import linear_attention_ref, linear_attention_reference
from .step import linear_attention_step

try:
    from .triton import HAS_TRITON, linear_attention_triton
except ImportError:  # the backend file itself is absent
    HAS_TRITON, linear_attention_triton = False, None
if not HAS_TRITON:  # the module imports without triton; "auto" must then never pick it
    linear_attention_triton = None

BACKENDS = ("auto", "torch", "triton", "reference")
ENV_VAR = "RECBOLE_LRU_ATTENTION_BACKEND"


def resolve_backend(backend, device, eps=DEFAULT_EPS):
    """The concrete backend (``"torch"``, ``"triton"`` or ``"reference"``) a call will use."""
    if backend not in BACKENDS:
        raise ValueError(
            f"linear_attention: unknown backend {backend!r}; expected one of {BACKENDS}"
        )
    explicit = backend != "auto"
    if backend == "auto":
        env = backend_from_env(ENV_VAR, BACKENDS)
        if env is not None:
            backend, explicit = env, True
    if backend == "auto":
        usable = linear_attention_triton is not None and eps == DEFAULT_EPS
        return "triton" if usable and device.type == "cuda" else "torch"
    if backend == "triton" and explicit:
        if linear_attention_triton is None:
            raise RuntimeError(
                "linear_attention: the Triton backend is unavailable "
                "(install it with `pip install -e .[triton]`, on a machine with a CUDA GPU)"
            )
        if eps != DEFAULT_EPS:
            raise ValueError(
                f"linear_attention: the Triton backend uses eps={DEFAULT_EPS}; got eps={eps}"
            )
    return backend


def _check_shapes(q, k, v, mask):
    if q.dim() != 4 or k.shape != q.shape:
        raise ValueError(
            f"linear_attention: q and k must both be (B, H, N, K); got {tuple(q.shape)} "
            f"and {tuple(k.shape)}"
        )
    if v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(
            f"linear_attention: v must be (B, H, N, V) matching q {tuple(q.shape)}; "
            f"got {tuple(v.shape)}"
        )
    if mask is not None and (mask.dim() != 2 or tuple(mask.shape) != (q.shape[0], q.shape[2])):
        raise ValueError(
            f"linear_attention: mask must be (B, N) = {(q.shape[0], q.shape[2])}; "
            f"got {tuple(mask.shape)}"
        )


def linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor = None,
    causal: bool = False,
    backend: str = "auto",
    *,
    eps: float = DEFAULT_EPS,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> torch.Tensor:
    """LinRec attention: ``out = phi(q) (phi(k)^T v) / sqrt(K)``, phi = ELU then L2 norm.

    Args:
        q: ``(B, H, N, K)`` queries.
        k: ``(B, H, N, K)`` keys.
        v: ``(B, H, N, V)`` values.
        mask: ``(B, N)`` bool, True at real positions. Padding positions contribute nothing
            and get zero outputs. None applies no mask, which reproduces the public LinRec
            code (there padding tokens take part in every output).
        causal: if True, ``out_t = phi(q_t) sum_{i<=t} phi(k_i) v_i^T / sqrt(K)``.
        backend: ``"auto"``, ``"torch"``, ``"triton"`` or ``"reference"`` (module docstring).
        eps: epsilon of the normalisation, ``phi(x) = ELU(x) / sqrt(||ELU(x)||^2 + eps)``.
        chunk_size: chunk length of the causal torch backend (None: chosen from K and V).

    Returns:
        ``(B, H, N, V)`` in v's dtype (the normalisation runs in float32 at least).
    """
    _check_shapes(q, k, v, mask)
    chosen = resolve_backend(backend, q.device, eps)
    if chosen == "triton":
        return linear_attention_triton(q, k, v, mask=mask, causal=causal)
    if chosen == "reference":
        return linear_attention_reference(q, k, v, mask=mask, causal=causal, eps=eps)
    return linear_attention_chunked(
        q, k, v, mask=mask, causal=causal, eps=eps, chunk_size=chunk_size
    )


__all__ = [
    "linear_attention",
    "BACKENDS",
    "ENV_VAR",
    "resolve_backend",
    "linear_attention_reference",
    "linear_attention_chunked",
    "linear_attention_triton",
    "linear_attention_step",
    "linrec_feature_map",
    "DEFAULT_EPS",
    "linear_attention_ref",
    "linear_attention_torch",
]
