"""Dataset class for whole-sequence training (``train_mode: whole_sequence``).

RecBole's :class:`SequentialDataset` turns every interaction into one training row holding its
prefix (ml-100k: 97k rows for 943 users) and models take the loss at the last position only.
The LRURec paper instead trains on each user's sequence once, with the loss at every position.

:class:`WholeSequenceDataset` builds exactly RecBole's rows and split (so validation and test rows
are identical to the prefix regime), then keeps, per user, the training row that ends at the user's
last training target: its input items and its target give the labels for every position of the
user's most recent ``MAX_ITEM_LIST_LENGTH`` targets (``sequence_windows: last``, the paper's one row
per user). ``sequence_windows: all`` also keeps the rows that end earlier windows of
``MAX_ITEM_LIST_LENGTH`` targets (targets ``n, n-L, n-2L, ...`` for a user with ``n`` training
targets), so that every training target of a long history is used once per epoch.

With ``train_mode: prefix`` (or any model that doesn't ask for it) the class behaves exactly as
RecBole's :class:`SequentialDataset`.
"""
from __future__ import annotations

import numpy as np
import torch
from recbole.data.dataset import SequentialDataset

__all__ = ["WholeSequenceDataset", "TRAIN_MODES", "SEQUENCE_WINDOWS", "window_end_rows", "next_item_labels"]

TRAIN_MODES = ("prefix", "whole_sequence")
SEQUENCE_WINDOWS = ("last", "all")


def window_end_rows(uid: np.ndarray, window: int, last_only: bool = False) -> np.ndarray:
    """Indices of rows that end a window, given per-row user ids in sequence order per user.

    Args:
        uid: (T,) user id of each training row; each user's rows appear in time order
            (they need not be contiguous).
        window: the window length ``MAX_ITEM_LIST_LENGTH``.
        last_only: keep only each user's last row (one row per user).

    Returns:
        (R,) sorted row indices whose distance from the user's last row is a multiple of ``window``.
    """
    uid = np.asarray(uid)
    if uid.size == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(uid, kind="stable")
    sorted_uid = uid[order]
    starts = np.flatnonzero(np.r_[True, sorted_uid[1:] != sorted_uid[:-1]])
    counts = np.diff(np.r_[starts, sorted_uid.size])
    pos_in_user = np.arange(sorted_uid.size) - np.repeat(starts, counts)
    from_last = np.repeat(counts, counts) - 1 - pos_in_user
    keep = order[from_last == 0] if last_only else order[from_last % window == 0]
    return np.sort(keep)


def next_item_labels(item_seq: torch.Tensor, item_seq_len: torch.Tensor, pos_items: torch.Tensor) -> torch.Tensor:
    """Next-item label for every input position of right-padded sequences.

    Args:
        item_seq: (B, L) item ids, 0 = padding, real items first.
        item_seq_len: (B,) number of real items (>= 1).
        pos_items: (B,) the item that follows the last real item.

    Returns:
        (B, L) labels: ``item_seq[:, t+1]`` inside the sequence, ``pos_items`` at the last real
        position, 0 at padding positions.
    """
    labels = torch.cat([item_seq[:, 1:], torch.zeros_like(item_seq[:, :1])], dim=1)
    last = (item_seq_len.long() - 1).clamp_min(0).unsqueeze(1)
    return labels.scatter(1, last, pos_items.long().unsqueeze(1))


class WholeSequenceDataset(SequentialDataset):
    """RecBole's sequential dataset with one row per user window for whole-sequence training."""

    def build(self):
        from .models._common import check_config  # late: the models import this module

        # the dataset is built before the model: check the shared keys now, with the model's message
        check_config(self.config, self.config["model"])
        mode = self.config["train_mode"] or "prefix"
        datasets = super().build()
        if mode == "whole_sequence":
            windows = self.config["sequence_windows"] or "last"
            if windows not in SEQUENCE_WINDOWS:
                raise ValueError(f"sequence_windows={windows!r} must be one of {list(SEQUENCE_WINDOWS)}; fix it "
                                 f"in your YAML file, config_dict or --sequence_windows=... option.")
            train = datasets[0]
            keep = window_end_rows(train.inter_feat[self.uid_field].numpy(), self.max_item_list_len,
                                   last_only=windows == "last")
            datasets[0] = train.copy(train.inter_feat[torch.from_numpy(keep)])
            self.logger.info(
                f"whole_sequence training: {len(train.inter_feat)} prefix rows -> {len(keep)} sequence rows"
            )
        return datasets
