"""Dataset class of the plugin's models (``train_mode: whole_sequence`` and RecBole's prefix rows).

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
RecBole's :class:`SequentialDataset`. The row selection and labels are in :mod:`recbole_lru.regimes`.
"""
from __future__ import annotations

import os

import torch
from recbole.data.dataset import SequentialDataset

from .catalog import DatasetNotFoundError
from .regimes import SEQUENCE_WINDOWS, TRAIN_MODES, check_regime, next_item_labels, window_end_rows

# the regime names stay importable from here (the models and older scripts read them from data)
__all__ = ["WholeSequenceDataset", "DatasetNotFoundError", "TRAIN_MODES", "SEQUENCE_WINDOWS",
           "window_end_rows", "next_item_labels"]


class WholeSequenceDataset(SequentialDataset):
    """RecBole's sequential dataset with one row per user window for whole-sequence training."""

    def build(self):
        # the dataset is built before the model: check the keys that shape its rows now
        check_regime(self.config, self.config["model"])
        mode = self.config["train_mode"] or "prefix"
        datasets = super().build()
        if mode == "whole_sequence":
            windows = self.config["sequence_windows"] or "last"
            train = datasets[0]
            keep = window_end_rows(train.inter_feat[self.uid_field].numpy(), self.max_item_list_len,
                                   last_only=windows == "last")
            datasets[0] = train.copy(train.inter_feat[torch.from_numpy(keep)])
            self.logger.info(
                f"whole_sequence training: {len(train.inter_feat)} prefix rows -> {len(keep)} sequence rows"
            )
        return datasets

    def _download(self):
        """RecBole's download, but a dataset that is neither on disk nor downloadable (offline, or
        a name RecBole has no link for) gives one error naming the folder and the fix."""
        folder = os.path.abspath(self.dataset_path)
        hint = (
            f"Dataset '{self.dataset_name}' was not found: no file {folder}{os.sep}"
            f"{self.dataset_name}.inter. Put the atomic files (<name>.inter, optionally .user/.item) "
            f"in that folder, or point RecBole at their parent folder with --data_path=DIR "
            f"(config key data_path)."
        )
        try:
            url = self._get_download_url("url")
        except Exception:  # RecBole raises a bare ValueError/KeyError for names it has no link for
            raise DatasetNotFoundError(hint + " RecBole has no download link for this name.") from None
        try:
            return super()._download()
        except (OSError, ValueError) as err:  # URLError is an OSError
            raise DatasetNotFoundError(f"{hint} Downloading it from {url} failed ({err}).") from None
        except SystemExit:
            raise DatasetNotFoundError(hint + " The download was declined.") from None
