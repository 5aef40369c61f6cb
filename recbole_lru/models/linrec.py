r"""
LinRec
################################################

Reference:
    Langming Liu, Liu Cai, Chi Zhang, Xiangyu Zhao, Jingtong Gao, Wanyu Wang, Yifu Lv, Wenqi Fan,
    Yiqi Wang, Ming He, Zitao Liu and Qing Li. "LinRec: Linear Attention Mechanism for Long-term
    Sequential Recommender Systems." SIGIR 2023. arXiv:2411.01537.

Reference code:
    Applied-Machine-Learning-Lab/LinRec (RecBole's SASRec with an edited ``layers.py``)
"""
from __future__ import annotations

import torch
from recbole.model.sequential_recommender.sasrec import SASRec

from ..data import WholeSequenceDataset
from ..layers.linear_attention import use_linrec_attention
from ..trainer import SequentialTrainer
from ._common import TiedItemScoring, ce_backend, check_config, check_item_ids, no_decay_param_groups

__all__ = ["LinRec"]


class LinRec(TiedItemScoring, SASRec):
    r"""SASRec whose dot-product attention is LinRec's L2-normalised linear attention.

    Attention: :math:`\hat Q = \ell_2(\mathrm{ELU}(Q))`, :math:`\hat K = \ell_2(\mathrm{ELU}(K))` per
    token over the head dimension, :math:`\mathrm{Attn} = \hat Q (\hat K^\top V) / \sqrt{d_h}`:
    O(N d^2) instead of O(N^2 d); no N x N matrix exists anywhere, not even the attention mask
    (the encoder is handed the (B, 1, 1, N) padding mask only).

    NOTE (deviations from the public code, each switchable):
        * Padding positions are masked out of the attention (``linrec_mask_padding: True``);
          ``False`` reproduces the public code, where padding takes part.
        * ``causal: True`` adds the causal form (prefix sums of k v^T) that the public code lacks;
          it enables ``train_mode: whole_sequence`` and O(1)-state incremental inference
          (:meth:`init_state`, :meth:`step`, :meth:`encode_history`).
        * An epsilon guards the L2 normalisation; ``attn_dropout_prob`` drops whole value tokens per
          head during training (the public code never applies attention dropout); see
          :mod:`recbole_lru.layers.linear_attention`.
    """

    DATASET_CLASS = WholeSequenceDataset
    TRAINER_CLASS = SequentialTrainer

    def __init__(self, config, dataset):
        check_config(config, "LinRec")
        super().__init__(config, dataset)

        # load parameters info
        self.mask_padding = config["linrec_mask_padding"] is not False
        self.causal = bool(config["causal"])
        self.train_mode = config["train_mode"] or "prefix"
        self.attention_backend = config["attention_backend"] or "auto"
        self.ce_backend = ce_backend(config)
        if self.train_mode == "whole_sequence" and not self.causal:
            raise ValueError(
                "Invalid LinRec config: train_mode='whole_sequence' scores every position, so each "
                "position must not see later items; set causal: True (or use train_mode: prefix)."
            )

        # swap SASRec's softmax attention for LinRec's, keeping SASRec's initialised weights
        use_linrec_attention(self, mask_padding=self.mask_padding, causal=self.causal,
                             backend=self.attention_backend)

    # ------------------------------------------------------------------ encoder
    def _embed(self, item_seq: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        emb = self.item_embedding(item_seq) + self.position_embedding(positions)
        return self.dropout(self.LayerNorm(emb))

    def encode(self, item_seq: torch.Tensor) -> torch.Tensor:
        """(B, L) ids -> (B, L, D) hidden states at every position."""
        positions = torch.arange(item_seq.size(1), dtype=torch.long, device=item_seq.device)
        x = self._embed(item_seq, positions.unsqueeze(0))
        padding = (item_seq > 0).view(item_seq.size(0), 1, 1, -1)  # [B 1 1 L], never [B 1 L L]
        return self.trm_encoder(x, padding, output_all_encoded_layers=True)[-1]

    def forward(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        return self.gather_indexes(self.encode(item_seq), item_seq_len - 1)  # [B D]

    # ------------------------------------------------------------------ incremental inference
    def _require_causal(self):
        if not self.causal:
            raise RuntimeError("LinRec incremental inference needs causal: True (the non-causal "
                               "attention lets earlier positions see later items).")

    def init_state(self, batch_size: int) -> dict:
        """Empty history: per layer the running sum of k v^T per head (B, H, K, K), and the
        number of items seen (B,), which picks the position embedding."""
        self._require_causal()
        layers = self.trm_encoder.layer
        device = self.item_embedding.weight.device
        return {
            "kv": [layer.multi_head_attention.init_state(batch_size) for layer in layers],
            "length": torch.zeros(batch_size, dtype=torch.long, device=device),
        }

    def encode_history(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> dict:
        """State after each user's (right-padded) history, built by stepping through it."""
        state = self.init_state(item_seq.size(0))
        for t in range(item_seq.size(1)):
            real = item_seq[:, t] > 0
            state = self._advance(item_seq[:, t], state, real)[1]
        return state

    def _advance(self, item_ids, state, real=None):
        positions = state["length"].clamp_max(self.max_seq_length - 1)
        x = self._embed(item_ids, positions)  # [B D]
        new_kv = []
        for layer, kv in zip(self.trm_encoder.layer, state["kv"]):
            attn, kv = layer.multi_head_attention.step(x, kv, mask_t=real)
            x = layer.feed_forward(attn)
            new_kv.append(kv)
        length = state["length"] + (1 if real is None else real.long())
        return x, {"kv": new_kv, "length": length}

    def step(self, item_ids: torch.Tensor, state: dict):
        """Append one item per user and score all items; O(1) in the history length.

        Equals ``full_sort_predict`` on the same history while the history fits in
        ``MAX_ITEM_LIST_LENGTH``; past it the last position embedding is reused (the state cannot
        forget items, whereas full_sort_predict truncates the history).

        Returns:
            scores (B, n_items) and the new state.

        Raises:
            TypeError / ValueError: a state of another kind (another model's, another width, batch,
            dtype or device): a mismatched state would otherwise be stepped silently.
        """
        self._require_causal()
        check_item_ids(item_ids, self.n_items)
        origin = "from init_state(B), encode_history or a previous LinRec step"
        if not (isinstance(state, dict) and set(state) == {"kv", "length"} and isinstance(state["kv"], (list, tuple))
                and all(isinstance(v, torch.Tensor) for v in (*state["kv"], state["length"]))):
            raise TypeError(f"state must be the dict {{'kv': [tensor per layer], 'length': tensor}} {origin}; got "
                            f"a {type(state).__name__}" + (" (LRURec's state is a list)" if isinstance(state, list) else ""))
        if item_ids.dim() != 1:
            raise ValueError(f"item_ids must be one id per user, shape (B,); got shape {tuple(item_ids.shape)}")
        layers = self.trm_encoder.layer
        if len(state["kv"]) != len(layers):
            raise ValueError(f"state['kv'] must hold {len(layers)} tensors (one per layer), got {len(state['kv'])}")
        weight = self.item_embedding.weight
        attn = layers[0].multi_head_attention
        batch = item_ids.shape[0]
        want = ((batch, attn.num_attention_heads, attn.attention_head_size, attn.attention_head_size),
                torch.float64 if weight.dtype == torch.float64 else torch.float32)
        for i, kv in enumerate(state["kv"]):
            if (tuple(kv.shape), kv.dtype) != want or kv.device != weight.device:
                raise ValueError(f"state['kv'][{i}] is a {tuple(kv.shape)} {kv.dtype} tensor on {kv.device}; this "
                                 f"LinRec steps {want[0]} (B, H, K, K) {want[1]} states on {weight.device} ({origin})")
        length = state["length"]
        if tuple(length.shape) != (batch,) or length.dtype != torch.long or length.device != weight.device:
            raise ValueError(f"state['length'] is a {tuple(length.shape)} {length.dtype} tensor; this LinRec steps "
                             f"a ({batch},) int64 one on {weight.device} ({origin})")
        x, state = self._advance(item_ids, state)
        return self.score_all(x), state

    def optimizer_param_groups(self, weight_decay: float) -> list[dict]:
        # as LRURec: decay on weight matrices and embeddings, none on biases and LayerNorm
        return no_decay_param_groups(self, weight_decay)
