"""RecBole's ``TransformerEncoder`` run on the real positions of a padded batch only.

RecBole's encoder computes every layer over the whole (B, L) grid, padding included; on CPU that is
most of a SASRec training step when histories are short (Video: ~9 real items in a grid of 50), and
the outputs at padding positions are never read. Every op but attention is position-wise, so this
path runs them on the packed (N, D) real tokens; attention, which needs the grid, runs on small grids
of rows grouped by extent (last real position + 1), each as wide as its longest row, through
``F.scaled_dot_product_attention``.

Same function as RecBole's at every real position: a real query attends to the real keys at or
before it (RecBole's mask: causal and ``item_seq != 0``; its -10000 underflows to an exact zero
weight after the softmax, as -inf does here). Dropout is the same: hidden dropout on each
position's features, attention dropout on the softmax weights (SDPA's ``dropout_p`` is applied
there, as RecBole's ``attn_dropout``). The parameters are read from the RecBole encoder's own
modules, so state_dict keys and checkpoints are unchanged; outputs at padding positions are zero.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from recbole.model.layers import TransformerEncoder

__all__ = ["PackedLayout", "packed_layout", "packed_attention", "packed_encoder"]

# RecBole's FeedForward activations as native ops (same functions: its gelu is the erf form)
_ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "swish": F.silu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}


@dataclass
class PackedLayout:
    """Where the N real tokens of a (B, L) batch live, in packed order.

    ``index``: (N,) flat index ``b * L + l`` of each packed token in the padded grid; ``position``:
    (N,) its position l. ``buckets``: one per group of rows attended together, ``(start, stop,
    rows, width, slot, mask)``: packed tokens ``start:stop`` are those rows' tokens, ``slot`` their
    flat index in the group's (rows, width) grid, ``mask`` (rows, 1, width, width) which keys each
    query sees.
    """

    batch: int
    length: int
    index: torch.Tensor
    position: torch.Tensor
    buckets: list


def packed_layout(real: torch.Tensor, min_width: int = 4) -> PackedLayout:
    """Layout of the tokens where ``real`` (B, L) is True, rows grouped by extent in powers of two.

    A row's extent is its last real position + 1; rows of extent in (2^(k-1), 2^k] form one group
    (extents up to ``min_width`` one group: tiny grids cost more in calls than in arithmetic), so a
    group's attention grid wastes at most 4x a row's own causal square. All-padding rows are dropped.
    """
    B, L = real.shape
    pos = torch.arange(1, L + 1, device=real.device)
    extent = (real * pos).amax(1) if L else real.new_zeros(B, dtype=torch.long)
    group = torch.ceil(torch.log2(extent.clamp(min=1).double())).long().clamp(min=max(1, min_width).bit_length() - 1)
    group = torch.where(extent > 0, group, -1)
    # rows ordered by group (stable: rows keep their batch order inside a group)
    order = torch.argsort(group, stable=True)
    real_sorted = real[order]
    row, position = real_sorted.nonzero(as_tuple=True)  # row-major: each row's tokens contiguous
    index = order[row] * L + position
    counts = real_sorted.sum(1)
    row_start = torch.cumsum(counts, 0) - counts  # packed offset of each sorted row's first token
    causal = torch.ones(L, L, dtype=torch.bool, device=real.device).tril()
    buckets = []
    # one host sync for the group boundaries; the rest stays on the device
    groups, sizes = torch.unique_consecutive(group[order], return_counts=True)
    r0 = 0
    for g, n in zip(groups.tolist(), sizes.tolist()):
        r1 = r0 + n
        if g >= 0:
            rows = order[r0:r1]
            width = int(extent[rows].max())
            start = int(row_start[r0])
            stop = start + int(counts[r0:r1].sum())
            slot = (row[start:stop] - r0) * width + position[start:stop]
            keys = real[rows, :width]
            # the diagonal is always allowed, so grid slots holding padding never get an empty
            # softmax (NaN in backward); a real query's own key is real, so its weights are unchanged
            allowed = causal[:width, :width] & (keys[:, None, :] | torch.eye(width, dtype=torch.bool,
                                                                              device=real.device))
            buckets.append((start, stop, n, width, slot, allowed.unsqueeze(1)))
        r0 = r1
    return PackedLayout(B, L, index, position, buckets)


def packed_attention(qkv: torch.Tensor, layout: PackedLayout, n_heads: int, dropout_p: float) -> torch.Tensor:
    """(N, 3D) packed [query | key | value] -> (N, D) attention context, scaled dot product per head."""
    D = qkv.size(1) // 3
    parts = []
    for start, stop, rows, width, slot, mask in layout.buckets:
        grid = qkv.new_zeros(rows * width, 3 * D).index_copy(0, slot, qkv[start:stop])
        q, k, v = grid.view(rows, width, 3, n_heads, D // n_heads).permute(2, 0, 3, 1, 4)
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        parts.append(ctx.transpose(1, 2).reshape(rows * width, D).index_select(0, slot))
    return torch.cat(parts) if parts else qkv.new_zeros(0, D)


def packed_encoder(encoder: TransformerEncoder, x: torch.Tensor, layout: PackedLayout, hidden_act: str) -> torch.Tensor:
    """RecBole's ``encoder`` (its parameters and dropout rates, train/eval from ``encoder.training``)
    on (N, D) packed input tokens; returns the last layer's (N, D) outputs."""
    act = _ACTIVATIONS[hidden_act]
    for layer in encoder.layer:
        att, ff = layer.multi_head_attention, layer.feed_forward
        # one projection for query, key and value (weights concatenated per call, so the three
        # RecBole Linear modules stay the parameters)
        qkv = F.linear(x, torch.cat([att.query.weight, att.key.weight, att.value.weight]),
                       torch.cat([att.query.bias, att.key.bias, att.value.bias]))
        p_attn = att.attn_dropout.p if att.training else 0.0
        ctx = packed_attention(qkv, layout, att.num_attention_heads, p_attn)
        h = att.out_dropout(att.dense(ctx))
        x = att.LayerNorm(h + x)
        h = ff.dropout(ff.dense_2(act(ff.dense_1(x))))
        x = ff.LayerNorm(h + x)
    return x
