"""The materialised LinRec attention: the specification the fast backends are tested against.

It builds the full ``(N, N)`` score matrix ``A = phi(q) phi(k)^T``, so it costs O(N^2) time and
memory: for tests and small inputs only.
"""
import math

import torch
import torch.nn.functional as F

from .feature_map import DEFAULT_EPS


def linear_attention_reference(q, k, v, mask=None, causal=False, eps=DEFAULT_EPS):
    """LinRec attention written as a masked quadratic form.

    ``out = (phi(q) phi(k)^T  masked) v / sqrt(K)`` with ``phi`` = ELU then L2 normalisation
    (``x / sqrt(||x||^2 + eps)``, written out here independently of ``feature_map.py``).

    Args:
        q: ``(B, H, N, K)``.
        k: ``(B, H, N, K)``.
        v: ``(B, H, N, V)``.
        mask: ``(B, N)`` bool, True at real positions, or None. None applies no padding
            mask at all, as the public LinRec code does (padding tokens then take part).
            Otherwise a masked position neither contributes nor receives anything: its
            output row is zero.
        causal: if True, position ``t`` sees positions ``i <= t`` only.
        eps: epsilon of the normalisation.

    Returns:
        ``(B, H, N, V)`` in v's dtype; computed in float64 when given float64, else float32.
    """
    dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    n, head_dim = q.shape[-2], q.shape[-1]

    def phi(x):
        x = F.elu(x.to(dtype))
        return x / torch.sqrt((x * x).sum(-1, keepdim=True) + eps)

    scores = phi(q) @ phi(k).transpose(-1, -2)  # [B H N N]
    allowed = torch.ones(n, n, dtype=torch.bool, device=q.device)
    if causal:
        allowed = torch.tril(allowed)
    allowed = allowed.expand(q.shape[0], 1, n, n)
    if mask is not None:
        real = mask.to(torch.bool)
        allowed = allowed & real[:, None, :, None] & real[:, None, None, :]
    scores = scores.masked_fill(~allowed, 0.0)
    out = scores @ v.to(dtype) / math.sqrt(head_dim)
    return out.to(v.dtype)


#: the name this function had before every implementation was named after its file
linear_attention_ref = linear_attention_reference
