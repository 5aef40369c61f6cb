"""LinRec attention in plain PyTorch, O(N K V) time and memory: no ``(N, N)`` matrix.

Letters: B batch, H heads, N length, K query/key head dim, V value head dim, C chunk length.

* Non-causal: ``out = phi(q) (phi(k)^T v) / sqrt(K)``; the ``(K, V)`` state is built first.
* Causal: ``out_t = phi(q_t) sum_{i<=t} phi(k_i) v_i^T / sqrt(K)``, chunk-wise: one ``(K, V)``
  state per chunk of C tokens, an exclusive prefix sum over chunks carries what came before,
  and a lower-triangular ``(C, C)`` product inside each chunk handles the rest.
The same causal sum one token at a time, for incremental inference, is ``step.py``.

Padding (``mask`` False) zeroes ``phi(k)`` and ``v`` there, so the position adds nothing to any
state, and zeroes ``phi(q)``, so its output row is zero. Masking uses ``masked_fill`` on shapes
known in advance: no host-device sync and no branch on tensor values.
"""
import math

import torch
import torch.nn.functional as F

from .feature_map import DEFAULT_EPS, linrec_feature_map

#: Default chunk length of the causal form: None picks ``auto_chunk_size``.
DEFAULT_CHUNK_SIZE = None


def auto_chunk_size(k_dim, v_dim):
    """C = max(K, V) clamped to [16, 128].

    The intra-chunk block costs ~N C (K + V) and the chunk states ~N K V, so C near K and V
    balances them; measured on CPU (B=32, N=2000, fwd+bwd), C=16 was best for K=V=16 and
    C=64 for K=V=64, and C=8 or 4x too large cost 2-3x.
    """
    return max(16, min(128, max(k_dim, v_dim)))


def _features(q, k, v, mask, eps):
    """phi(q), phi(k) and v in the compute dtype, with padding positions zeroed."""
    qf = linrec_feature_map(q, eps)
    kf = linrec_feature_map(k, eps)
    vf = v.to(qf.dtype)
    if mask is not None:
        pad = ~mask.to(torch.bool)[:, None, :, None]  # [B 1 N 1]
        qf = qf.masked_fill(pad, 0.0)
        kf = kf.masked_fill(pad, 0.0)
        vf = vf.masked_fill(pad, 0.0)
    return qf, kf, vf


def linear_attention_chunked(
    q, k, v, mask=None, causal=False, eps=DEFAULT_EPS, chunk_size=DEFAULT_CHUNK_SIZE
):
    """LinRec attention in PyTorch (see the module docstring for the math).

    Args:
        q: ``(B, H, N, K)``.
        k: ``(B, H, N, K)``.
        v: ``(B, H, N, V)``.
        mask: ``(B, N)`` bool, True at real positions; None for no padding mask.
        causal: prefix form if True.
        eps: epsilon of the feature map's normalisation.
        chunk_size: C, the chunk length of the causal form; None for ``auto_chunk_size``.

    Returns:
        ``(B, H, N, V)`` in v's dtype.
    """
    scale = 1.0 / math.sqrt(q.shape[-1])
    qf, kf, vf = _features(q, k, v, mask, eps)
    if causal:
        out = _causal_chunked(qf, kf, vf, chunk_size)
    else:
        state = torch.einsum("bhnk,bhnv->bhkv", kf, vf)  # [B H K V]
        out = torch.einsum("bhnk,bhkv->bhnv", qf, state)
    return (out * scale).to(v.dtype)


def _causal_chunked(qf, kf, vf, chunk_size):
    """``out_t = qf_t sum_{i<=t} kf_i vf_i^T`` for features already mapped and masked."""
    batch, heads, n, k_dim = qf.shape
    v_dim = vf.shape[-1]
    if chunk_size is None:
        chunk_size = auto_chunk_size(k_dim, v_dim)
    c = max(1, min(int(chunk_size), n))
    n_chunks = -(-n // c)
    pad = n_chunks * c - n
    if pad:
        # zero rows add nothing to any state, and their outputs are cut off below
        qf = F.pad(qf, (0, 0, 0, pad))
        kf = F.pad(kf, (0, 0, 0, pad))
        vf = F.pad(vf, (0, 0, 0, pad))
    qc = qf.reshape(batch, heads, n_chunks, c, k_dim)
    kc = kf.reshape(batch, heads, n_chunks, c, k_dim)
    vc = vf.reshape(batch, heads, n_chunks, c, v_dim)

    # state of everything before each chunk: exclusive prefix sum of per-chunk states
    chunk_states = torch.einsum("bhcik,bhciv->bhckv", kc, vc)  # [B H nC K V]
    before = torch.cumsum(chunk_states, dim=2)
    before = F.pad(before[:, :, :-1], (0, 0, 0, 0, 1, 0))  # shift by one chunk
    inter = torch.einsum("bhcik,bhckv->bhciv", qc, before)

    # inside a chunk: small lower-triangular (C, C) score block
    scores = torch.einsum("bhcik,bhcjk->bhcij", qc, kc)  # [B H nC C C]
    keep = torch.ones(c, c, dtype=torch.bool, device=qf.device).tril()
    scores = scores.masked_fill(~keep, 0.0)
    intra = torch.einsum("bhcij,bhcjv->bhciv", scores, vc)

    out = (inter + intra).reshape(batch, heads, n_chunks * c, v_dim)
    return out[:, :, :n]


#: the name this function had before every implementation was named after its file
linear_attention_torch = linear_attention_chunked
