"""LRURec's ``step`` for serving: the same arithmetic with everything that does not depend on the
request computed once at load.

``LRURec.step`` rebuilds lambda and gamma from their log parameters, views the complex state,
runs the modules' forward hooks and checks its inputs on every call: about 30 small torch ops for a
2-block model, each costing more than its arithmetic at serving batch sizes. Here:

* the embedding LayerNorm is applied to the whole catalogue once (a (n_items, D) table): a lookup
  replaces the embedding, dropout (eval: identity) and LayerNorm;
* the complex state h (N,) is kept as its (re, im) pairs, a real (2N,) vector with the bytes of
  the complex one, and the recurrence ``lambda * h + gamma * (B x + b)`` becomes two real
  products: gamma is folded into B's rows, and multiplying by the diagonal complex lambda is a
  block-diagonal (2N, 2N) real matrix of 2x2 rotation-scalings;
* every weight is stored transposed and contiguous, so each product is one ``addmm``.

Numerically this is the model's own ``step`` up to float rounding (the test compares them in
float64 and float32). Only inference: no autograd, no dropout.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["LRUStepper"]


def _rotation_matrix(lam: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(N,) complex lambda -> (2N, 2N) real R with (h as (re, im) pairs) @ R == lambda * h."""
    n = lam.shape[0]
    a, b = lam.real.to(dtype), lam.imag.to(dtype)
    r = torch.zeros(2 * n, 2 * n, dtype=dtype)
    i = torch.arange(n)
    # row = input component, column = output component (right-multiplied): re' = a re - b im, im' = b re + a im
    r[2 * i, 2 * i], r[2 * i + 1, 2 * i] = a, -b
    r[2 * i, 2 * i + 1], r[2 * i + 1, 2 * i + 1] = b, a
    return r


class _Block:
    def __init__(self, block, dtype: torch.dtype):
        lru = block.lru
        lam, gamma = lru.eigenvalues()
        scale = gamma.to(dtype).repeat_interleave(2)  # one gamma per (re, im) pair
        self.in_t = (lru.in_proj.weight.to(dtype) * scale[:, None]).t().contiguous()  # (D, 2N)
        self.in_b = (lru.in_proj.bias.to(dtype) * scale).contiguous()
        self.rot = _rotation_matrix(lam, dtype)
        self.out_t, self.out_b = lru.out_proj.weight.to(dtype).t().contiguous(), lru.out_proj.bias.to(dtype)
        self.residual = lru.use_residual
        self.norm1 = _norm(lru.layer_norm, dtype)
        ffn = block.ffn
        self.ffn = None
        if isinstance(ffn, torch.nn.Module) and hasattr(ffn, "w_1"):
            self.ffn = (ffn.w_1.weight.to(dtype).t().contiguous(), ffn.w_1.bias.to(dtype),
                        ffn.w_2.weight.to(dtype).t().contiguous(), ffn.w_2.bias.to(dtype))
            self.ffn_residual = ffn.use_residual
            self.norm2 = _norm(ffn.layer_norm, dtype)

    def __call__(self, x: torch.Tensor, h: torch.Tensor):
        h = torch.addmm(self.in_b, x, self.in_t).addmm_(h, self.rot)
        y = torch.addmm(self.out_b, h, self.out_t)
        if self.residual:
            y = y.add_(x)
        y = _apply_norm(y, self.norm1)
        if self.ffn is None:
            return y, h
        w1, b1, w2, b2 = self.ffn
        z = torch.addmm(b2, F.gelu(torch.addmm(b1, y, w1)), w2)
        if self.ffn_residual:
            z = z.add_(y)
        return _apply_norm(z, self.norm2), h


def _norm(module, dtype):
    """A LayerNorm's (weight, bias, eps), or None for the Identity of ``use_layer_norm: False``."""
    if isinstance(module, torch.nn.LayerNorm):
        return module.weight.to(dtype), module.bias.to(dtype), module.eps
    return None


def _apply_norm(x, norm):
    if norm is None:
        return x
    weight, bias, eps = norm
    return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)


class LRUStepper:
    """Precomputed inference step of an LRURec model in eval mode.

    States are real (B, 2N) tensors per block, the (re, im) pairs of the model's complex (B, N)
    states (:meth:`to_real` / :meth:`to_complex` convert; the bytes are the same).
    """

    def __init__(self, model, dtype: torch.dtype | None = None):
        dtype = dtype or model.item_embedding.weight.dtype
        with torch.inference_mode():
            self.table = model.embed(torch.arange(model.n_items, device=model.item_bias.device)).to(dtype)
            self.blocks = [_Block(b, dtype) for b in model.blocks]
        self.dtype, self.state_width = dtype, 2 * model.state_size

    def init_state(self, batch_size: int) -> list[torch.Tensor]:
        return [torch.zeros(batch_size, self.state_width, dtype=self.dtype) for _ in self.blocks]

    def __call__(self, item_ids: torch.Tensor, state: list[torch.Tensor]):
        """(B,) ids in [0, n_items), real states -> (hidden (B, D), new real states)."""
        x = self.table.index_select(0, item_ids)
        new_state = []
        for block, h in zip(self.blocks, state):
            x, h = block(x, h)
            new_state.append(h)
        return x, new_state

    @staticmethod
    def to_real(state: list[torch.Tensor]) -> list[torch.Tensor]:
        return [torch.view_as_real(h).flatten(-2) for h in state]

    @staticmethod
    def to_complex(state: list[torch.Tensor]) -> list[torch.Tensor]:
        return [torch.view_as_complex(h.unflatten(-1, (-1, 2)).contiguous()) for h in state]
