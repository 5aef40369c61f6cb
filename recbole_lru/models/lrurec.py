r"""
LRURec
################################################

Reference:
    Zhenrui Yue, Yueqi Wang, Zhankui He, Huimin Zeng, Julian McAuley and Dong Wang.
    "Linear Recurrent Units for Sequential Recommendation." WSDM 2024. arXiv:2310.02367.

Reference code:
    yueqirex/LRURec (model/lru.py)
"""
from __future__ import annotations

import math

import torch
from recbole.model.abstract_recommender import SequentialRecommender
from torch import nn

from ..data import WholeSequenceDataset
from ..layers.lru import LRUBlock
from ..trainer import SequentialTrainer
from ._common import ce_backend, check_config, check_item_ids, no_decay_param_groups, sequence_loss

__all__ = ["LRURec"]


class LRURec(SequentialRecommender):
    r"""Linear recurrent units for sequential recommendation.

    * Embedding (eq. 7): ``LayerNorm(Dropout(E[x]))``; no positional embedding, the recurrence orders.
    * LRU (eq. 5): :math:`h_k = \Lambda h_{k-1} + \exp(\gamma^{\log}) \odot B x_k`,
      :math:`y_k = \mathrm{LayerNorm}(\mathrm{Dropout}(\Re(C h_k)) + x_k)`, with a complex diagonal
      :math:`\Lambda` of width N = 2D, ring init and D = identity (the residual).
    * Training runs the recurrence as a parallel scan (Alg. 1, eq. 6, or the faster forms behind
      :func:`recbole_lru.ops.lru_scan`); serving runs it one step at a time (:meth:`step`).
    * Block (eq. 9): LRUNorm then ``LayerNorm(Dropout(W2 Dropout(GELU(W1 x))) + x)``; ``n_layers`` blocks.
    * Prediction (eq. 10): :math:`E h_t + b^o`, the item embedding tied, plus an item bias.

    NOTE (deviations from the official code, each on purpose):
        * Sequences are right-padded as RecBole does, not left-padded to a power of two; the scan is
          causal, so a real position never sees padding and outputs at real positions do not depend
          on the padding length.
        * eq. 8 shows an outer GELU in the PFFN; the official code has none, nor do we.
        * ``train_mode: prefix`` (default for like-for-like comparisons in RecBole) trains on
          RecBole's prefix rows with the loss at the last position; ``train_mode: whole_sequence``
          is the paper's regime (loss at every position, one row per user window).
        * Padding positions are never scored against the catalogue during training.
        * ``first_item_target`` (on by default) keeps the official code's extra target: there the
          padding token just before a sequence is a learned input (no ``padding_idx``) whose label is
          the first item, so every sequence that starts at the user's first interaction also trains
          "first item from an empty history". We run that position as one recurrence step from the
          zero state (:meth:`encode_empty`), which is what the official code computes for it.
    """

    DATASET_CLASS = WholeSequenceDataset
    TRAINER_CLASS = SequentialTrainer

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        check_config(config, "LRURec", {"r_min": (0.0, 1.0), "r_max": (0.0, 1.0)})

        # load parameters info
        self.hidden_size = config["hidden_size"]
        self.n_layers = config["n_layers"]
        self.inner_size = config["inner_size"] or 4 * self.hidden_size
        self.state_size = config["state_size"] or 2 * self.hidden_size
        self.hidden_dropout_prob = config["hidden_dropout_prob"]
        # one dropout rate in the paper: the LRU output's follows hidden_dropout_prob unless set
        self.attn_dropout_prob = (
            config["attn_dropout_prob"] if config["attn_dropout_prob"] is not None else self.hidden_dropout_prob
        )
        self.layer_norm_eps = config["layer_norm_eps"]
        self.initializer_range = config["initializer_range"]
        self.loss_type = config["loss_type"]
        self.train_mode = config["train_mode"] or "prefix"
        self.r_min = config["r_min"]
        self.r_max = config["r_max"]
        self.max_phase = config["max_phase"] if config["max_phase"] is not None else 2 * math.pi
        self.use_layer_norm = config["use_layer_norm"] is not False
        self.use_residual = config["use_residual"] is not False
        self.use_pffn = config["use_pffn"] is not False
        self.scan_backend = config["scan_backend"] or "auto"
        self.ce_backend = ce_backend(config)
        self.first_item_target = bool(config["first_item_target"]) and self.train_mode == "whole_sequence"
        if not self.r_min < self.r_max:
            raise ValueError(f"Invalid LRURec config: r_min={self.r_min} must be below r_max={self.r_max}.")

        # define layers and loss
        # with the first-item target, id 0 is the learned start-of-history input (as the official code)
        self.item_embedding = nn.Embedding(self.n_items, self.hidden_size,
                                           padding_idx=None if self.first_item_target else 0)
        self.emb_dropout = nn.Dropout(self.hidden_dropout_prob)
        self.emb_layer_norm = nn.LayerNorm(self.hidden_size, eps=self.layer_norm_eps)
        self.blocks = nn.ModuleList(
            LRUBlock(self.hidden_size, self.state_size, self.inner_size, self.hidden_dropout_prob,
                     self.attn_dropout_prob, self.layer_norm_eps, self.r_min, self.r_max, self.max_phase,
                     self.use_layer_norm, self.use_residual, self.use_pffn, self.scan_backend)
            for _ in range(self.n_layers)
        )
        self.item_bias = nn.Parameter(torch.zeros(self.n_items))

        # parameters initialization
        self.apply(self._init_weights)

    def _init_weights(self, module):
        """Truncated normal (std = initializer_range, clipped at 2 std) for every weight except
        LayerNorm and the LRU's log parameters, which keep their own init."""
        std = self.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    # ------------------------------------------------------------------ encoder
    def embed(self, item_seq: torch.Tensor) -> torch.Tensor:
        """eq. 7: (B, L) ids -> (B, L, D)."""
        return self.emb_layer_norm(self.emb_dropout(self.item_embedding(item_seq)))

    def encode(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor):
        """Run every block over the whole sequence.

        Returns:
            hidden (B, L, D) at every position (zero at padding positions), and each block's
            recurrent states (B, L, N).
        """
        B, L = item_seq.shape
        # Only the recurrence needs the (B, L) grid: embedding, projections, dropout, LayerNorm and
        # PFFN act on one position at a time, so they run on the T real positions alone (typically
        # well under half of a right-padded batch); padding positions of ``hidden`` are zero.
        index = (item_seq.reshape(-1) > 0).nonzero().squeeze(1)  # [T]
        x = self.embed(item_seq.reshape(-1).index_select(0, index))  # [T D]
        states = []
        for block in self.blocks:
            x, h = block.forward_packed(x, index, (B, L))
            states.append(h)
        hidden = x.new_zeros(B * L, x.shape[-1]).index_copy_(0, index, x).view(B, L, -1)
        return hidden, states

    def encode_empty(self, n: int) -> torch.Tensor:
        """(n, D) outputs for an empty history: the start input (id 0) run one step from the zero
        state; in training mode each row draws its own dropout masks."""
        x = self.embed(torch.zeros(n, dtype=torch.long, device=self.item_bias.device))
        for block, h in zip(self.blocks, self.init_state(n)):
            x, _ = block.step(x, h)
        return x

    def forward(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.encode(item_seq, item_seq_len)
        return self.gather_indexes(hidden, item_seq_len - 1)  # [B D]

    # ------------------------------------------------------------------ prediction (eq. 10)
    def score_all(self, h: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N, n_items) scores."""
        return torch.addmm(self.item_bias, h, self.item_embedding.weight.t())

    def output_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight [n_items D], bias [n_items]) of :meth:`score_all`, for the fused CE loss."""
        return self.item_embedding.weight, self.item_bias

    def score_items(self, h: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(N, D), (N,) -> (N,) scores of the given items."""
        return (h * self.item_embedding(items)).sum(-1) + self.item_bias[items]

    def calculate_loss(self, interaction):
        item_seq = interaction[self.ITEM_SEQ]
        item_seq_len = interaction[self.ITEM_SEQ_LEN]
        hidden, _ = self.encode(item_seq, item_seq_len)  # [B L D]
        return sequence_loss(self, interaction, hidden, item_seq, item_seq_len)

    def predict(self, interaction):
        seq_output = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return self.score_items(seq_output, interaction[self.ITEM_ID])  # [B]

    def full_sort_predict(self, interaction):
        seq_output = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return self.score_all(seq_output)  # [B n_items]

    # ------------------------------------------------------------------ incremental inference
    def init_state(self, batch_size: int) -> list[torch.Tensor]:
        """Empty history: one (B, N) complex zero state per block."""
        p = self.blocks[0].lru.params_log
        dtype = torch.complex128 if p.dtype == torch.float64 else torch.complex64
        return [torch.zeros(batch_size, self.state_size, dtype=dtype, device=p.device) for _ in self.blocks]

    def encode_history(self, item_seq: torch.Tensor, item_seq_len: torch.Tensor) -> list[torch.Tensor]:
        """The state after each user's history (right-padded (B, L) ids, lengths (B,)); length 0
        gives the empty state."""
        _, states = self.encode(item_seq, item_seq_len)
        idx = (item_seq_len.long() - 1).clamp_min(0)
        empty = (item_seq_len == 0).unsqueeze(-1)
        out = []
        for h in states:
            last = h.gather(1, idx.view(-1, 1, 1).expand(-1, 1, h.shape[-1])).squeeze(1)
            out.append(torch.where(empty, torch.zeros_like(last), last))
        return out

    def step(self, item_ids: torch.Tensor, state: list[torch.Tensor]):
        """Append one item per user and score all items: O(1) in the history length.

        Args:
            item_ids: (B,) internal item ids in [1, n_items - 1].
            state: from :meth:`init_state`, :meth:`encode_history` or a previous step.

        Returns:
            scores (B, n_items) for the next item, and the new state.

        Raises:
            TypeError / ValueError: a state of another kind (another model's, another width, batch,
            dtype or device): a mismatched state would otherwise be stepped silently.
        """
        check_item_ids(item_ids, self.n_items)
        origin = "from init_state(B), encode_history or a previous LRURec step"
        if not isinstance(state, (list, tuple)) or not all(isinstance(h, torch.Tensor) for h in state):
            raise TypeError(f"state must be a list of {len(self.blocks)} complex tensors {origin}; got a "
                            f"{type(state).__name__}" + (" (LinRec's state is a dict)" if isinstance(state, dict) else ""))
        if len(state) != len(self.blocks):
            raise ValueError(f"state must hold {len(self.blocks)} tensors (one per block), got {len(state)}")
        if item_ids.dim() != 1:
            raise ValueError(f"item_ids must be one id per user, shape (B,); got shape {tuple(item_ids.shape)}")
        p = self.blocks[0].lru.params_log
        want = ((item_ids.shape[0], self.state_size), torch.complex128 if p.dtype == torch.float64 else torch.complex64)
        for i, h in enumerate(state):
            if (tuple(h.shape), h.dtype) != want or h.device != p.device:
                raise ValueError(
                    f"state[{i}] is a {tuple(h.shape)} {h.dtype} tensor on {h.device}; this LRURec steps "
                    f"{want[0]} (B, N) {want[1]} states on {p.device}, B = len(item_ids), N = state_size "
                    f"({origin})")
        x = self.embed(item_ids)  # [B D]
        new_state = []
        for block, h in zip(self.blocks, state):
            x, h = block.step(x, h)
            new_state.append(h)
        return self.score_all(x), new_state

    def optimizer_param_groups(self, weight_decay: float) -> list[dict]:
        return no_decay_param_groups(self, weight_decay)
