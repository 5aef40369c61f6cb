"""LinRec's feature map: ELU, then an L2 normalisation of each token's vector.

Every backend (reference, torch, triton, the incremental step) uses this exact math,
so the model's training forward and its step-by-step inference agree.

    phi(x) = ELU(x) * rsqrt(||ELU(x)||^2 + eps)        (norm over the last dim)

The epsilon sits inside the square root: phi is smooth everywhere, a zero vector maps to a
zero vector with finite gradients (the Jacobian at 0 is I / sqrt(eps)), and for a vector of
norm r the result differs from the plain x / ||x|| of the public LinRec code by a relative
factor of about eps / (2 r^2) (5e-7 at r = 1 with the default eps).
"""
import torch
import torch.nn.functional as F

from ..utils import compute_dtype

#: Epsilon of the L2 normalisation, shared by every backend.
DEFAULT_EPS = 1e-6


def linrec_feature_map(x: torch.Tensor, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """ELU followed by an epsilon-guarded L2 normalisation over the last dim.

    Args:
        x: ``(..., K)`` any float dtype.
        eps: added to the squared norm before the reciprocal square root.

    Returns:
        ``(..., K)`` in float32 (float64 when given float64), each vector of norm < 1.
    """
    x = F.elu(x.to(compute_dtype(x.dtype)))
    return x * torch.rsqrt(x.square().sum(dim=-1, keepdim=True) + eps)
