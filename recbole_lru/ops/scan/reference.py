"""The LRU scan as a plain loop over time: the specification every other backend is tested against."""
from typing import Optional

import torch

from ..utils import compute_dtype
from ._common import check_inputs


def lru_scan_reference(lam: torch.Tensor, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Diagonal linear recurrence, one step at a time.

        h_t = lam * h_{t-1} + mask_t * x_t,   h_{-1} = 0

    At a padded position (mask_t False) the input is ignored but the state still decays by lam.

    Args:
        lam: c(N) diagonal of the recurrence (|lam| < 1 for a stable scan).
        x: c(B L N) inputs.
        mask: b(B L), True at real positions; None means every position is real.

    Returns:
        h: c(B L N) in the dtype of x, computed in complex128 when given complex128, else complex64.
        Differentiable through autograd (one graph node per step: slow, but obviously right).
    """
    check_inputs(lam, x, mask)
    dtype = compute_dtype(lam.dtype, x.dtype)
    lam_c = lam.to(dtype)
    x_c = x.to(dtype)
    if mask is not None:
        x_c = x_c * mask.unsqueeze(-1).to(x_c.real.dtype)
    h = torch.zeros_like(x_c[:, 0])
    states = []
    for t in range(x_c.shape[1]):
        h = lam_c * h + x_c[:, t]
        states.append(h)
    if not states:
        return x.new_zeros(x.shape)
    return torch.stack(states, dim=1).to(x.dtype)


#: the name this function had before every implementation was named after its file
lru_scan_ref = lru_scan_reference
