"""Pieces shared by the plugin's sequential models: config checks, the two training regimes,
item-id checks for incremental inference, the optimizer's parameter groups and scoring through the
tied item embeddings (SASRec-style models)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data import TRAIN_MODES, next_item_labels
from ..ops.linear_ce import check_backend as _check_ce_backend
from ..ops.linear_ce import linear_cross_entropy

__all__ = [
    "check_config",
    "sequence_loss",
    "ce_backend",
    "check_item_ids",
    "no_decay_param_groups",
    "TiedItemScoring",
]


def check_config(config, model_name: str, extra_ranges: dict | None = None) -> None:
    """One clear error for out-of-range hyperparameters, before any layer is built."""

    def get(key, default=None):
        value = config[key]
        return default if value is None else value

    problems = []
    for key in ("hidden_dropout_prob", "attn_dropout_prob"):
        v = get(key, 0.0)
        if not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
            problems.append(f"{key}={v!r} must be a number in [0, 1)")
    for key, lowest in (("hidden_size", 1), ("n_layers", 1), ("MAX_ITEM_LIST_LENGTH", 1)):
        v = config[key]
        if not isinstance(v, int) or isinstance(v, bool) or v < lowest:
            problems.append(f"{key}={v!r} must be an integer >= {lowest}")
    mode = get("train_mode", "prefix")
    if mode not in TRAIN_MODES:
        problems.append(f"train_mode={mode!r} must be one of {list(TRAIN_MODES)}")
    loss = get("loss_type", "CE")
    if loss not in ("CE", "BPR"):
        problems.append(f"loss_type={loss!r} must be 'CE' or 'BPR'")
    neg = config["train_neg_sample_args"]
    if loss == "BPR" and mode == "prefix" and isinstance(neg, dict) and "none" in (neg.get("distribution"),
                                                                                   neg.get("sample_num")):
        # the model YAMLs switch RecBole's sampler off (CE needs none; RecBole's Config turns that None
        # into distribution 'none'), and BPR in prefix mode scores the one negative per row that the
        # sampler adds; whole_sequence draws its own
        problems.append(
            "loss_type='BPR' with train_mode='prefix' needs one sampled negative per training row, but "
            "train_neg_sample_args is None; set train_neg_sample_args: {distribution: uniform, sample_num: 1} "
            "(--train_neg_sample_args=\"{distribution: uniform, sample_num: 1}\"), or use "
            "train_mode: whole_sequence, which draws its own negatives")
    for key, (lo, hi) in (extra_ranges or {}).items():
        v = config[key]
        if v is None:
            continue
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not lo <= v <= hi:
            problems.append(f"{key}={v!r} must be in [{lo}, {hi}]")
    if problems:
        raise ValueError(
            f"Invalid {model_name} config: " + "; ".join(problems)
            + ". Fix the value in your YAML file, config_dict or --key=value option."
        )


def ce_backend(config) -> str:
    """The validated ``ce_backend`` key: how the CE loss scores the catalogue (see
    :func:`recbole_lru.ops.linear_ce.resolve_backend`); "auto" when unset."""
    return _check_ce_backend(config["ce_backend"] or "auto")


def _catalogue_ce(model: nn.Module, h: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``model.score_all(h)`` against ``target``; models that expose their output
    layer (``output_weights() -> (weight, bias)``) go through the fused op, which never builds the
    (N, n_items) logits on CPU, the dominant cost of a whole-sequence training step."""
    if not hasattr(model, "output_weights"):
        return F.cross_entropy(model.score_all(h), target)
    weight, bias = model.output_weights()
    return linear_cross_entropy(h, weight, target, bias, backend=getattr(model, "ce_backend", "auto"))


def sequence_loss(model: nn.Module, interaction, hidden: torch.Tensor, item_seq: torch.Tensor,
                  item_seq_len: torch.Tensor) -> torch.Tensor:
    """Loss for either training regime.

    ``train_mode: prefix`` (RecBole's): the loss at the last real position of each row.
    ``train_mode: whole_sequence`` (the LRURec paper's): the loss at every real position, the label
    being the next item (plus, for models with ``first_item_target``, each whole-history row's first
    item, scored from ``model.encode_empty``); only real positions are scored against the catalogue, which is the
    dominant cost of a step (the scoring of padding positions is skipped entirely).

    Args:
        model: a SequentialRecommender with ``train_mode``, ``loss_type``, ``POS_ITEM_ID``,
            ``NEG_ITEM_ID`` and ``score_all(h) -> (N, n_items)`` / ``score_items(h, items)``; with
            ``output_weights()`` (and ``ce_backend``) the CE loss runs the fused catalogue op.
        hidden: (B, L, D) output of the encoder at every position.
    """
    pos_items = interaction[model.POS_ITEM_ID]
    if model.train_mode == "whole_sequence":
        labels = next_item_labels(item_seq, item_seq_len, pos_items)  # [B L]
        real = labels > 0
        h = hidden[real]  # [N D]
        target = labels[real]  # [N]
        if getattr(model, "first_item_target", False):
            # rows shorter than MAX_ITEM_LIST_LENGTH hold the user's whole history, so their first
            # item is also a target, predicted from an empty history (the official LRURec code's)
            starts = (item_seq_len < model.max_seq_length).nonzero().squeeze(1)
            if starts.numel():
                h = torch.cat([h, model.encode_empty(starts.numel()).to(h.dtype)])
                target = torch.cat([target, item_seq[starts, 0]])
        if model.loss_type == "CE":
            return _catalogue_ce(model, h, target)
        # BPR per position against one uniformly drawn negative (RecBole's sampler gives one per row)
        neg = torch.randint(1, model.n_items, target.shape, device=target.device)
        return -F.logsigmoid(model.score_items(h, target) - model.score_items(h, neg)).mean()
    h = model.gather_indexes(hidden, item_seq_len - 1)  # [B D]
    if model.loss_type == "CE":
        return _catalogue_ce(model, h, pos_items)
    neg_items = interaction[model.NEG_ITEM_ID]
    return -F.logsigmoid(model.score_items(h, pos_items) - model.score_items(h, neg_items)).mean()


def check_item_ids(item_ids: torch.Tensor, n_items: int) -> None:
    """Incremental inference takes real item ids: 1 .. n_items-1 (0 is padding).

    This check reads the values, so it syncs with the device; it runs in ``step`` only, which
    serves one interaction at a time, never inside the training forward.
    """
    if item_ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise TypeError(f"item ids must be an integer tensor, got {item_ids.dtype}")
    if item_ids.numel() and (int(item_ids.min()) < 1 or int(item_ids.max()) >= n_items):
        raise ValueError(
            f"item ids must be in [1, {n_items - 1}] (internal ids of this dataset; 0 is padding), "
            f"got values in [{int(item_ids.min())}, {int(item_ids.max())}]. Map raw tokens with "
            f"dataset.token2id(dataset.iid_field, tokens)."
        )


def no_decay_param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups as the reference: decay on weight matrices and embeddings, none on biases,
    LayerNorm and the LRU's (nu, theta, gamma) log parameters."""
    decay, no_decay = [], []
    norm_params = {id(p) for m in model.modules() if isinstance(m, nn.LayerNorm) for p in m.parameters()}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or id(p) in norm_params or name.endswith("params_log"):
            no_decay.append(p)
        else:
            decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


class TiedItemScoring:
    """Scores through the item embedding table (input and output tied, as RecBole's SASRec): the
    catalogue product, its weights for the fused cross-entropy, sampled scores, and the loss over
    :meth:`encode`'s positions. Put before the RecBole base class."""

    def score_all(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.item_embedding.weight.t()

    def output_weights(self) -> tuple[torch.Tensor, None]:
        """(weight [n_items D], no bias) of :meth:`score_all`, for the fused CE loss."""
        return self.item_embedding.weight, None

    def score_items(self, h: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (h * self.item_embedding(items)).sum(-1)

    def calculate_loss(self, interaction):
        item_seq = interaction[self.ITEM_SEQ]
        item_seq_len = interaction[self.ITEM_SEQ_LEN]
        return sequence_loss(self, interaction, self.encode(item_seq), item_seq, item_seq_len)
