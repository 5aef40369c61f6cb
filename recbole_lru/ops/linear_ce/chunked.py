"""Scoring + cross-entropy fused over row chunks, never holding the full (N, V) logits.

Per chunk of C rows: the logits of those rows against the whole catalogue (V, C), their softmax
in place, and at once the three gradient products (dh, dweight, dbias). The loss is a scalar, so
the backward only scales the saved gradients by the incoming one: three GEMMs per step instead of
autograd's three plus the passes over N x V logits that ``log_softmax`` and its backward make
(allocate, max, exp, sum, log, subtract; then exp, scatter, multiply), which on a CPU cost as much
as the GEMMs at the catalogue sizes of recommendation.
"""
from typing import Optional

import torch
from torch.autograd.function import once_differentiable

from ..utils import compute_dtype

__all__ = ["linear_cross_entropy_chunked", "DEFAULT_CHUNK_SIZE"]

# Rows per chunk. A (V, C) fp32 chunk of a 23,716-item catalogue at C=64 is 6 MB: it stays in the
# last-level cache between the forward GEMM, the in-place softmax and the two gradient GEMMs.
# Measured with benchmarks/bench_train_step.py (32..256 rows lie within noise of each other).
DEFAULT_CHUNK_SIZE = 64


def _fused(h, weight, bias, target, ignore_index, chunk_size, need_dh, need_dw, need_db, matmul_dtype):
    """Loss and (optionally) its gradients wrt h, weight and bias, chunk by chunk."""
    N, D = h.shape
    valid = target != ignore_index  # [N]
    count = valid.sum()
    # per-row weight of the mean; the clamp gives zero gradients (not NaN) when every target is ignored
    row_w = valid.to(h.dtype) / count.clamp(min=1).to(h.dtype)  # [N]
    safe_target = torch.where(valid, target, torch.zeros_like(target))
    need_grad = need_dh or need_dw or need_db
    dh = torch.empty_like(h) if need_dh else None
    dw = torch.zeros_like(weight) if need_dw else None
    db = torch.zeros_like(bias) if need_db else None
    loss_sum = h.new_zeros(())
    low = matmul_dtype is not None and matmul_dtype != h.dtype
    w_mm = weight.to(matmul_dtype) if low else weight  # cast once, not per chunk
    bias_col = bias.unsqueeze(1) if bias is not None else None  # [V 1]
    for start in range(0, N, chunk_size):
        stop = min(start + chunk_size, N)
        hc = h[start:stop]  # [C D]
        cols = torch.arange(stop - start, device=h.device)
        tc = safe_target[start:stop]
        vc = valid[start:stop]
        # transposed logits [V C]: weight @ hc.T is the layout MKL runs fastest on CPU (measured
        # ~2x h @ weight.T), and the softmax runs down columns
        if low:  # bf16 product (fp32 accumulation inside the GEMM), softmax in the compute dtype
            s = (w_mm @ hc.to(matmul_dtype).t()).to(h.dtype)
            if bias_col is not None:
                s.add_(bias_col)
        else:
            s = weight @ hc.t() if bias_col is None else torch.addmm(bias_col, weight, hc.t())
        picked = s[tc, cols]  # [C] the target's logit
        m = s.amax(0)  # [C]
        s.sub_(m).exp_()
        z = s.sum(0)  # [C]
        loss_sum = loss_sum + ((z.log() + m - picked) * vc).sum()
        if not need_grad:
            continue
        # dloss/dlogits = (exp(s - m) / z - onehot) * row weight. The block keeps exp(s - m) - z * onehot;
        # 1/z and the row weight go into the small operands below, so no pass over the (V, C) block divides
        s[tc, cols] -= z * vc.to(s.dtype)
        f = row_w[start:stop] / z  # [C]
        s_mm = s.to(matmul_dtype) if low else s
        if need_dh:
            dh[start:stop] = (s_mm.t() @ w_mm).to(h.dtype) * f.unsqueeze(1)
        if need_dw:
            hf = hc * f.unsqueeze(1)
            if low:
                dw += s_mm @ hf.to(matmul_dtype)
            else:
                dw.addmm_(s, hf)
        if need_db:
            db.addmv_(s, f)
    loss = loss_sum / count.to(h.dtype)  # NaN when nothing is counted, as F.cross_entropy
    return loss, dh, dw, db


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, bias, target, ignore_index, chunk_size, matmul_dtype):
        # float64 when given it, else float32 (half inputs upcast)
        dtype = compute_dtype(*(t.dtype for t in (h, weight, bias) if t is not None))
        needs = ctx.needs_input_grad
        loss, dh, dw, db = _fused(
            h.to(dtype), weight.to(dtype), None if bias is None else bias.to(dtype), target,
            ignore_index, chunk_size, needs[0], needs[1], bias is not None and needs[2], matmul_dtype,
        )
        ctx.save_for_backward(
            *(g.to(t.dtype) if g is not None else None for g, t in ((dh, h), (dw, weight), (db, bias)))
        )
        return loss.to(h.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss):
        dh, dw, db = ctx.saved_tensors
        scale = lambda g: None if g is None else g * grad_loss.to(g.dtype)  # noqa: E731
        return scale(dh), scale(dw), scale(db), None, None, None, None


def linear_cross_entropy_chunked(
    h: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    ignore_index: int = -100,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    matmul_dtype: Optional[torch.dtype] = None,
) -> torch.Tensor:
    """Mean cross-entropy of ``h @ weight.T + bias`` against ``target``, fused and chunked.

    Same contract as :func:`linear_cross_entropy_reference`; peak extra memory is one (V, C) block
    instead of the (N, V) logits and their gradient. Gradients are computed during the forward
    (only for the inputs that require them), so a forward without backward under autograd costs the
    same as a training step; under ``torch.no_grad`` only the loss is computed.

    Args:
        h: r(N D); weight: r(V D); target: i(N); bias: r(V) or None.
        chunk_size: rows C per chunk.
        matmul_dtype: None (the compute dtype: float32, float64 when given it) or torch.bfloat16: the
            three products in bf16 (fp32 accumulation, logits and probabilities rounded to bf16
            before each product, about 3e-3 relative error in the gradients), softmax and gradient
            accumulation in float32. On CPUs with AVX512-BF16 the products run about twice as fast.
    Returns:
        r() in the dtype of ``h``.
    """
    if h.dim() != 2 or weight.dim() != 2 or h.shape[1] != weight.shape[1]:
        raise ValueError(f"h must be (N, D) and weight (V, D), got {tuple(h.shape)} and {tuple(weight.shape)}")
    if target.shape != h.shape[:1]:
        raise ValueError(f"target must be (N,) = {tuple(h.shape[:1])}, got {tuple(target.shape)}")
    if bias is not None and bias.shape != weight.shape[:1]:
        raise ValueError(f"bias must be (V,) = {tuple(weight.shape[:1])}, got {tuple(bias.shape)}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if matmul_dtype not in (None, torch.bfloat16, torch.float16, torch.float32, torch.float64):
        raise ValueError(f"matmul_dtype must be None or a floating dtype, got {matmul_dtype}")
    return _LinearCrossEntropy.apply(h, weight, bias, target, ignore_index, chunk_size, matmul_dtype)
