"""Whole-sequence rows: which training rows are kept, and the labels built from them."""
import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recbole_lru import data, regimes
from recbole_lru.regimes import next_item_labels, window_end_rows


def test_window_end_rows_all_and_last():
    uid = np.array([1, 1, 1, 2, 1, 2, 2])  # each user's rows in time order, interleaved
    assert window_end_rows(uid, 2).tolist() == [1, 3, 4, 6]
    assert window_end_rows(uid, 2, last_only=True).tolist() == [4, 6]
    assert window_end_rows(uid, 10).tolist() == [4, 6]
    assert window_end_rows(np.array([], dtype=np.int64), 3).tolist() == []


@settings(max_examples=60, deadline=None, database=None)
@given(uid=st.lists(st.integers(0, 5), max_size=80), window=st.integers(1, 9))
def test_windows_tile_every_target_once(uid, window):
    """The kept rows' windows (each row and the window-1 rows before it, per user) cover every
    training target of every user exactly once, and each user's last row is always kept."""
    uid = np.array(uid, dtype=np.int64)
    keep = set(window_end_rows(uid, window).tolist())
    last = set(window_end_rows(uid, window, last_only=True).tolist())
    for u in np.unique(uid):
        rows = np.flatnonzero(uid == u)
        assert rows[-1] in keep and rows[-1] in last and len(last & set(rows.tolist())) == 1
        kept = [i for i, r in enumerate(rows) if r in keep]  # positions of kept rows in the user's order
        covered = sorted(t for k in kept for t in range(max(0, k - window + 1), k + 1))
        assert covered == list(range(len(rows)))


def test_next_item_labels():
    seq = torch.tensor([[3, 4, 5, 0], [7, 0, 0, 0]])
    labels = next_item_labels(seq, torch.tensor([3, 1]), torch.tensor([6, 9]))
    assert labels.tolist() == [[4, 5, 6, 0], [9, 0, 0, 0]]


@settings(max_examples=60, deadline=None, database=None)
@given(lengths=st.lists(st.integers(1, 8), min_size=1, max_size=5), extra=st.integers(0, 3),
       seed=st.integers(0, 2**16))
def test_property_next_item_labels(lengths, extra, seed):
    g = torch.Generator().manual_seed(seed)
    L = max(lengths) + extra
    seq = torch.randint(1, 50, (len(lengths), L), generator=g)
    seq[torch.arange(L)[None, :] >= torch.tensor(lengths)[:, None]] = 0  # right padding
    pos = torch.randint(1, 50, (len(lengths),), generator=g)
    labels = next_item_labels(seq, torch.tensor(lengths), pos)
    for b, n in enumerate(lengths):
        assert labels[b, : n - 1].tolist() == seq[b, 1:n].tolist()
        assert int(labels[b, n - 1]) == int(pos[b])
        assert (labels[b, n:] == 0).all()


def test_regime_names_stay_importable_from_data():
    for name in ("TRAIN_MODES", "SEQUENCE_WINDOWS", "next_item_labels", "window_end_rows"):
        assert getattr(data, name) is getattr(regimes, name)


def test_regime_check_names_every_problem():
    config = {"MAX_ITEM_LIST_LENGTH": 0, "train_mode": "bogus", "sequence_windows": "some"}
    problems = regimes.regime_problems(config)
    assert len(problems) == 3 and "MAX_ITEM_LIST_LENGTH=0" in problems[0]
    assert regimes.regime_problems({"MAX_ITEM_LIST_LENGTH": 5, "train_mode": None, "sequence_windows": None}) == []
