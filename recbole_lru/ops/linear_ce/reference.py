"""The plain scoring + cross-entropy: the specification every faster form is tested against."""
from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ["linear_cross_entropy_reference"]


def linear_cross_entropy_reference(
    h: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    ignore_index: int = -100,
) -> torch.Tensor:
    """Mean cross-entropy of the scores ``h @ weight.T + bias`` against ``target``.

    Materialises the full (N, V) logits and lets autograd differentiate through them.

    Args:
        h: r(N D) query vectors (one per scored position).
        weight: r(V D) catalogue embeddings.
        target: i(N) class ids in [0, V); entries equal to ``ignore_index`` are left out of the mean.
        bias: r(V) per-class bias, or None.
    Returns:
        r() the mean over the targets that are not ignored (NaN when there are none, as
        ``F.cross_entropy``).
    """
    logits = h @ weight.t() if bias is None else torch.addmm(bias, h, weight.t())  # [N V]
    return F.cross_entropy(logits, target, ignore_index=ignore_index)
