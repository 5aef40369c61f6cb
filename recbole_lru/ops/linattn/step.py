"""One token of causal LinRec attention at a time: the state form of ``chunked.py``'s causal sum,
for incremental inference (``S_t = S_{t-1} + phi(k_t) v_t^T``).
"""
import math

import torch

from .feature_map import DEFAULT_EPS, linrec_feature_map

__all__ = ["linear_attention_step"]


def linear_attention_step(q_t, k_t, v_t, state=None, mask_t=None, eps=DEFAULT_EPS):
    """One step of causal LinRec attention, for incremental inference.

    ``S_t = S_{t-1} + phi(k_t) v_t^T``, ``out_t = phi(q_t) S_t / sqrt(K)``: feeding the tokens of
    a sequence one by one gives the outputs of ``linear_attention(..., causal=True)``.

    Args:
        q_t: ``(B, H, K)``.
        k_t: ``(B, H, K)``.
        v_t: ``(B, H, V)``.
        state: ``(B, H, K, V)`` running ``sum phi(k_i) v_i^T`` of the tokens so far, or None
            for an empty prefix.
        mask_t: ``(B,)`` bool, False where this step is padding: the state is left as it is
            and the output is zero. None means every row is real.
        eps: epsilon of the feature map's normalisation.

    Returns:
        ``(out_t, new_state)``: ``(B, H, V)`` in v_t's dtype, and ``(B, H, K, V)`` in float32
        (float64 when given float64).
    """
    scale = 1.0 / math.sqrt(q_t.shape[-1])
    qf = linrec_feature_map(q_t, eps)
    kf = linrec_feature_map(k_t, eps)
    vf = v_t.to(qf.dtype)
    if mask_t is not None:
        pad = ~mask_t.to(torch.bool)[:, None, None]  # [B 1 1]
        qf = qf.masked_fill(pad, 0.0)
        kf = kf.masked_fill(pad, 0.0)
        vf = vf.masked_fill(pad, 0.0)
    update = kf.unsqueeze(-1) * vf.unsqueeze(-2)  # [B H K V]
    new_state = update if state is None else state.to(update.dtype) + update
    out = torch.einsum("bhk,bhkv->bhv", qf, new_state) * scale
    return out.to(v_t.dtype), new_state
