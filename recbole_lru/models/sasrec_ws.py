r"""
SASRecWS
################################################

RecBole's SASRec trained the LRURec paper's way: one row per user window, cross-entropy at every
position (``train_mode: whole_sequence``), so training cost and accuracy compare with LRURec
under the same regime. The architecture, defaults and inference are RecBole's SASRec.

``encoder_backend`` picks how the training loss runs the transformer: ``plain`` (RecBole's encoder
over the padded grid) or ``packed`` (the same encoder's parameters on the real positions only,
:mod:`recbole_lru.layers.packed_transformer`); ``auto`` = packed on CPU, plain elsewhere. Prediction
(``forward``, ``predict``, ``full_sort_predict``) is RecBole's own path either way.

Reference:
    Wang-Cheng Kang and Julian McAuley. "Self-Attentive Sequential Recommendation." ICDM 2018.
"""
from __future__ import annotations

import torch
from recbole.model.sequential_recommender.sasrec import SASRec

from ..data import WholeSequenceDataset
from ..layers.packed_transformer import packed_encoder, packed_layout
from ..trainer import SequentialTrainer
from ._common import TiedItemScoring, ce_backend, check_config, no_decay_param_groups

__all__ = ["SASRecWS", "ENCODER_BACKENDS"]

ENCODER_BACKENDS = ("auto", "packed", "plain")


class SASRecWS(TiedItemScoring, SASRec):
    """SASRec with the choice of training regime (``train_mode``); causal attention as SASRec,
    so every position's output sees only earlier items."""

    DATASET_CLASS = WholeSequenceDataset
    TRAINER_CLASS = SequentialTrainer

    def __init__(self, config, dataset):
        check_config(config, "SASRecWS")
        super().__init__(config, dataset)
        self.train_mode = config["train_mode"] or "whole_sequence"
        self.ce_backend = ce_backend(config)
        self.encoder_backend = config["encoder_backend"] or "auto"
        if self.encoder_backend not in ENCODER_BACKENDS:
            raise ValueError(f"Invalid SASRecWS config: encoder_backend={self.encoder_backend!r} must be one of "
                             f"{list(ENCODER_BACKENDS)}")

    def uses_packed_encoder(self, device: torch.device) -> bool:
        # auto: packed where it was measured to win (CPU); on GPUs the padded grid is cheap and the
        # packed path's per-group calls and host syncs would only add latency
        return self.encoder_backend == "packed" or (self.encoder_backend == "auto" and device.type == "cpu")

    def encode(self, item_seq: torch.Tensor) -> torch.Tensor:
        """(B, L) ids -> (B, L, D) hidden states at every real position (``item_seq != 0``); with the
        packed encoder, padding positions (never scored) hold zeros."""
        if self.uses_packed_encoder(item_seq.device):
            return self.encode_packed(item_seq)
        position_ids = torch.arange(item_seq.size(1), dtype=torch.long, device=item_seq.device)
        input_emb = self.item_embedding(item_seq) + self.position_embedding(position_ids).unsqueeze(0)
        input_emb = self.dropout(self.LayerNorm(input_emb))
        mask = self.get_attention_mask(item_seq)
        return self.trm_encoder(input_emb, mask, output_all_encoded_layers=True)[-1]

    def encode_packed(self, item_seq: torch.Tensor) -> torch.Tensor:
        """:meth:`encode` computed on the real positions only (the same layers and parameters)."""
        B, L = item_seq.shape
        layout = packed_layout(item_seq != 0)
        x = self.item_embedding(item_seq.reshape(-1)[layout.index]) + self.position_embedding(layout.position)
        x = packed_encoder(self.trm_encoder, self.dropout(self.LayerNorm(x)), layout, self.hidden_act)
        return x.new_zeros(B * L, x.size(1)).index_copy(0, layout.index, x).view(B, L, -1)

    def optimizer_param_groups(self, weight_decay: float) -> list[dict]:
        # the LRURec paper trains every model alike: decoupled decay on weight matrices and embeddings only
        return no_decay_param_groups(self, weight_decay)
