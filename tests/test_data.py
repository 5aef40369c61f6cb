"""Whole-sequence rows: which training rows are kept, and the labels built from them."""
import numpy as np
import torch

from recbole_lru.data import next_item_labels, window_end_rows


def test_window_end_rows_all_and_last():
    uid = np.array([1, 1, 1, 2, 1, 2, 2])  # each user's rows in time order, interleaved
    assert window_end_rows(uid, 2).tolist() == [1, 3, 4, 6]
    assert window_end_rows(uid, 2, last_only=True).tolist() == [4, 6]
    assert window_end_rows(uid, 10).tolist() == [4, 6]
    assert window_end_rows(np.array([], dtype=np.int64), 3).tolist() == []


def test_windows_tile_every_target_once():
    rng = np.random.default_rng(0)
    uid = rng.integers(0, 5, size=200)
    keep = set(window_end_rows(uid, 7).tolist())
    for u in range(5):
        rows = np.flatnonzero(uid == u)
        kept = [i for i, r in enumerate(rows) if r in keep]  # positions of kept rows in the user's order
        n = len(rows)
        covered = sorted(t for k in kept for t in range(max(0, k - 6), k + 1))
        assert covered == list(range(n))


def test_next_item_labels():
    seq = torch.tensor([[3, 4, 5, 0], [7, 0, 0, 0]])
    labels = next_item_labels(seq, torch.tensor([3, 1]), torch.tensor([6, 9]))
    assert labels.tolist() == [[4, 5, 6, 0], [9, 0, 0, 0]]
