"""The two training regimes, shared by the dataset (which rows to keep) and the models (which labels
to score), so that neither imports the other.

* ``train_mode: prefix`` (RecBole's): one training row per prefix, the loss at its last position.
* ``train_mode: whole_sequence`` (the LRURec paper's): one row per user window, the loss at every
  position; ``sequence_windows`` says whether only the last window (``last``) or every window of
  ``MAX_ITEM_LIST_LENGTH`` targets (``all``) is kept.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["TRAIN_MODES", "SEQUENCE_WINDOWS", "window_end_rows", "next_item_labels", "regime_problems",
           "check_regime"]

TRAIN_MODES = ("prefix", "whole_sequence")
SEQUENCE_WINDOWS = ("last", "all")


def regime_problems(config) -> list[str]:
    """What is wrong with the keys that shape the training rows (empty when nothing is)."""
    problems = []
    length = config["MAX_ITEM_LIST_LENGTH"]
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        problems.append(f"MAX_ITEM_LIST_LENGTH={length!r} must be an integer >= 1")
    mode = config["train_mode"] or "prefix"
    if mode not in TRAIN_MODES:
        problems.append(f"train_mode={mode!r} must be one of {list(TRAIN_MODES)}")
    windows = config["sequence_windows"] or "last"
    if windows not in SEQUENCE_WINDOWS:
        problems.append(f"sequence_windows={windows!r} must be one of {list(SEQUENCE_WINDOWS)}")
    return problems


def check_regime(config, model_name: str) -> None:
    """One clear error for the row-shaping keys, raised before the dataset is built (which would
    otherwise fail deep inside RecBole's data augmentation)."""
    problems = regime_problems(config)
    if problems:
        raise ValueError(f"Invalid {model_name} config: " + "; ".join(problems)
                         + ". Fix the value in your YAML file, config_dict or --key=value option.")


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
