"""LinRec attention as a drop-in replacement for RecBole's ``MultiHeadAttention``.

Reference: Langming Liu et al., "LinRec: Linear Attention Mechanism for Long-term Sequential
Recommender Systems", SIGIR 2023, arXiv:2411.01537.

``LinRecMultiHeadAttention`` takes RecBole's constructor arguments first, the same
``forward(input_tensor, attention_mask)`` call, and holds the same sub-modules (``query``,
``key``, ``value``, ``dense``, ``LayerNorm``, ``attn_dropout``, ``out_dropout``), so state
dicts load both ways. Only the attention itself differs:
``softmax(Q K^T / sqrt(d)) V`` becomes ``phi(Q) (phi(K)^T V) / sqrt(d)`` with
phi = ELU then an epsilon-guarded L2 normalisation per token (``recbole_lru.ops``).

NOTE, deviations from the public LinRec code (which overwrote RecBole's ``layers.py``):

* Padding mask. The public code ignores ``attention_mask``, so padding tokens take part.
  Here padding positions contribute nothing and get zero attention output
  (``mask_padding=True``, the default); ``mask_padding=False`` reproduces the public code.
* Causal form. The public code has none; ``causal=True`` gives
  ``out_t = phi(q_t) sum_{i<=t} phi(k_i) v_i^T / sqrt(d)`` and enables ``step``.
  With ``causal=False`` (as in the public code) the additive mask's causal triangle is
  ignored: every position sees the whole sequence. That is harmless when only the last
  real position is scored (RecBole's SASRec), not when every position is.
* Attention dropout. The public code never applies ``attn_dropout_prob``. Softmax attention
  drops entries of the (N, N) probability matrix, which does not exist here; the closest
  O(N) analogue is used instead: during training each value token is dropped per head with
  probability ``attn_dropout_prob`` (and the kept ones scaled by 1/(1-p)), i.e. whole
  columns of the implicit attention matrix. Set ``attn_dropout_prob=0`` to train exactly
  as the public code does.
* Epsilon in the normalisation (the public code divides by the bare norm).
"""
import math

import torch
from torch import nn

from ..ops import linear_attention
from ..ops.linattn import BACKENDS, linear_attention_step


class LinRecMultiHeadAttention(nn.Module):
    """Multi-head LinRec self-attention sublayer: attention, dense, dropout, residual, LayerNorm.

    Args:
        n_heads: H.
        hidden_size: D, a multiple of H; each head has K = D / H dims.
        hidden_dropout_prob: dropout after ``dense``.
        attn_dropout_prob: per-head dropout of whole value tokens in training (module NOTE).
        layer_norm_eps: epsilon of the LayerNorm.
        mask_padding: if False, padding tokens take part as in the public LinRec code.
        causal: prefix (left-to-right) attention if True.
        backend: backend of ``recbole_lru.ops.linear_attention``.
    """

    def __init__(
        self,
        n_heads,
        hidden_size,
        hidden_dropout_prob,
        attn_dropout_prob,
        layer_norm_eps,
        mask_padding=True,
        causal=False,
        backend="auto",
    ):
        super().__init__()
        if hidden_size % n_heads != 0:
            raise ValueError(
                "The hidden size (%d) is not a multiple of the number of attention "
                "heads (%d)" % (hidden_size, n_heads)
            )
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
        self.num_attention_heads = n_heads
        self.attention_head_size = hidden_size // n_heads
        self.all_head_size = self.num_attention_heads * self.attention_head_size
        self.sqrt_attention_head_size = math.sqrt(self.attention_head_size)
        self.mask_padding = mask_padding
        self.causal = causal
        self.backend = backend

        self.query = nn.Linear(hidden_size, self.all_head_size)
        self.key = nn.Linear(hidden_size, self.all_head_size)
        self.value = nn.Linear(hidden_size, self.all_head_size)
        self.attn_dropout = nn.Dropout(attn_dropout_prob)

        self.dense = nn.Linear(hidden_size, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.out_dropout = nn.Dropout(hidden_dropout_prob)

    def extra_repr(self):
        return f"mask_padding={self.mask_padding}, causal={self.causal}, backend={self.backend!r}"

    @staticmethod
    def padding_mask_from_attention_mask(attention_mask):
        """The ``(B, N)`` real-position mask implied by a RecBole attention mask.

        RecBole's ``get_attention_mask`` gives an additive mask, 0 where attending is allowed
        and a large negative number elsewhere, of shape ``(B, 1, 1, N)`` (bidirectional) or
        ``(B, 1, N, N)`` (the key mask cut to a lower triangle). Position ``i`` is real iff
        ``mask[b, 0, 0, i] == 0`` in the first case and ``mask[b, 0, i, i] == 0`` in the
        second: the diagonal is never cut by the causal triangle, so it is the key mask
        itself, wherever the padding sits. Only a view is read; nothing N x N is built.
        A bool mask (True = allowed) is read the same way.
        """
        am = attention_mask
        if am.dim() == 4:
            am = am[:, 0]  # [B Nq N], Nq in {1, N}
        if am.dim() == 3:
            am = am[:, 0, :] if am.shape[-2] == 1 else am.diagonal(dim1=-2, dim2=-1)
        if am.dim() != 2:
            raise ValueError(
                f"cannot read a padding mask from an attention mask of shape "
                f"{tuple(attention_mask.shape)}"
            )
        return am if am.dtype == torch.bool else am == 0

    def _split_heads(self, x):
        """``[B N D]`` -> ``[B H N K]``, or ``[B D]`` -> ``[B H K]``."""
        x = x.view(*x.shape[:-1], self.num_attention_heads, self.attention_head_size)
        return x.transpose(-3, -2) if x.dim() == 4 else x

    def forward(self, input_tensor, attention_mask=None, padding_mask=None):
        """
        Args:
            input_tensor: ``(B, N, D)``.
            attention_mask: RecBole's additive mask, ``(B, 1, N, N)`` or ``(B, 1, 1, N)``;
                only its padding information is used (``padding_mask_from_attention_mask``).
            padding_mask: ``(B, N)`` bool, True at real positions; takes precedence over
                ``attention_mask`` when given (owning models that know it should pass it).

        Returns:
            ``(B, N, D)``.
        """
        batch, n, _ = input_tensor.shape
        mask = None
        if self.mask_padding:
            if padding_mask is not None:
                mask = padding_mask.to(torch.bool)
            elif attention_mask is not None:
                mask = self.padding_mask_from_attention_mask(attention_mask)

        query = self._split_heads(self.query(input_tensor))  # [B H N K]
        key = self._split_heads(self.key(input_tensor))
        value = self._split_heads(self.value(input_tensor))
        if self.training and self.attn_dropout.p > 0:
            keep = self.attn_dropout(value.new_ones(batch, self.num_attention_heads, n, 1))
            value = value * keep

        context = linear_attention(
            query, key, value, mask=mask, causal=self.causal, backend=self.backend
        )  # [B H N K]
        context = context.transpose(1, 2).reshape(batch, n, self.all_head_size)
        hidden_states = self.dense(context)
        hidden_states = self.out_dropout(hidden_states)
        return self.LayerNorm(hidden_states + input_tensor)

    def init_state(self, batch_size, device=None, dtype=None):
        """An empty incremental state: ``(B, H, K, K)`` zeros, float32 (float64 for float64 params)."""
        weight = self.query.weight
        if dtype is None:
            dtype = torch.float64 if weight.dtype == torch.float64 else torch.float32
        size = self.attention_head_size
        return torch.zeros(
            batch_size, self.num_attention_heads, size, size,
            device=weight.device if device is None else device, dtype=dtype,
        )

    def step(self, hidden_t, state, mask_t=None):
        """Causal incremental inference on one new token per row.

        Feeding ``x[:, 0], x[:, 1], ...`` from ``init_state`` gives, position by position, what
        ``forward`` gives with ``causal=True`` (attention dropout is not applied; use eval mode).

        Args:
            hidden_t: ``(B, D)`` the new token's input.
            state: ``(B, H, K, K)`` from ``init_state`` or the previous step.
            mask_t: ``(B,)`` bool, False for rows whose token is padding (state unchanged);
                ignored when ``mask_padding`` is False, as in ``forward``.

        Returns:
            ``(out, new_state)``: ``(B, D)`` and ``(B, H, K, K)``.
        """
        query = self._split_heads(self.query(hidden_t))  # [B H K]
        key = self._split_heads(self.key(hidden_t))
        value = self._split_heads(self.value(hidden_t))
        context, new_state = linear_attention_step(
            query, key, value, state, mask_t=mask_t if self.mask_padding else None
        )
        context = context.reshape(hidden_t.shape[0], self.all_head_size)
        hidden_states = self.out_dropout(self.dense(context))
        return self.LayerNorm(hidden_states + hidden_t), new_state


def use_linrec_attention(model, mask_padding=True, causal=False, backend="auto"):
    """Swap every RecBole ``MultiHeadAttention`` inside ``model`` for LinRec attention.

    "Drop-in attention" for SASRec, BERT4Rec and any other RecBole model built on
    ``TransformerEncoder``: each replacement keeps the weights, dropout rates, LayerNorm
    epsilon, device, dtype and train/eval mode of the module it replaces. A module registered
    in several places is replaced by one shared new module.

    Args:
        model: an ``nn.Module`` containing ``recbole.model.layers.MultiHeadAttention``
            sub-modules (not one itself).
        mask_padding, causal, backend: as in ``LinRecMultiHeadAttention``. Pass
            ``causal=True`` for models that score every position (each output must not see
            later items); ``causal=False`` follows the public LinRec code.

    Returns:
        The number of modules swapped.
    """
    from recbole.model.layers import MultiHeadAttention

    if isinstance(model, MultiHeadAttention):
        raise TypeError("use_linrec_attention: pass the module that contains the attention")
    replaced = {}
    for parent in list(model.modules()):
        # _modules, not named_children(): the latter lists a module registered twice only once
        for name, child in list(parent._modules.items()):
            if not isinstance(child, MultiHeadAttention):
                continue
            if id(child) not in replaced:
                weight = child.query.weight
                new = LinRecMultiHeadAttention(
                    child.num_attention_heads,
                    child.query.in_features,
                    child.out_dropout.p,
                    child.attn_dropout.p,
                    child.LayerNorm.eps,
                    mask_padding=mask_padding,
                    causal=causal,
                    backend=backend,
                ).to(device=weight.device, dtype=weight.dtype)
                new.load_state_dict(child.state_dict())
                new.train(child.training)
                replaced[id(child)] = new
            setattr(parent, name, replaced[id(child)])
    return len(replaced)
