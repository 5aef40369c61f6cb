"""The harness's trainer: whatever class RecBole's ``get_trainer`` gives, plus timing, a training-time
budget and resumable progress, through the trainer's own hooks (``fit``, ``_train_epoch``,
``_valid_epoch``, the checkpoint writers), never through methods replaced on an instance.

Resumption comes from the plugin's :class:`recbole_lru.trainer.SequentialTrainer`, which writes a
``-last`` checkpoint after every epoch (model, optimizer, early stopping, random states) and
continues from it exactly. Which trainers can resume:

* a subclass of ``SequentialTrainer`` (the plugin's models): as it is;
* RecBole's plain ``Trainer`` (every sequential model of RecBole 1.2.1 and most general ones):
  ``SequentialTrainer`` is put in its place. It *is* that Trainer plus the last checkpoint: its
  parameter groups apply only to models defining ``optimizer_param_groups`` (RecBole's don't), so
  the optimisation is unchanged;
* any other trainer (one RecBole defines for a particular model, e.g. with pretraining): it runs as
  it is and an interrupted run starts that model again from epoch 0.

Alongside the checkpoint the trainer keeps the harness's own record (per-epoch seconds, the
validation curve, the training clock) in ``progress.json``, written just *before* each last
checkpoint, so the record always reaches at least as far as the checkpoint and a resumed run
truncates it to the checkpoint's epoch. Seconds spent writing checkpoints are kept off the training
clock, so time-to-best means the same with and without resumption.
"""
from __future__ import annotations

import time

from recbole.trainer import Trainer

from ..provenance import atomic_write_json, json_safe
from ..trainer import SequentialTrainer

__all__ = ["TimeBudgetReached", "HarnessTrainerMixin", "harness_trainer_class", "metrics"]


class TimeBudgetReached(Exception):
    """Raised before an epoch that would end past the model's training-time budget."""


def metrics(result) -> dict:
    return {str(k).lower(): json_safe(float(v)) for k, v in (result or {}).items()}


def new_progress(fingerprint: str) -> dict:
    return {"fingerprint": fingerprint, "epoch_seconds": [], "valid_seconds": [], "curve": [],
            "train_seconds": 0.0, "checkpoint_seconds": 0.0, "resumed_at_epochs": [], "fit_done": False}


class HarnessTrainerMixin:
    """Timing, budget and progress hooks for any RecBole trainer (put first in the bases)."""

    def __init__(self, config, model, *, progress: dict, progress_path: str | None = None,
                 time_budget: float | None = None):
        self.progress = progress
        self.progress_path = progress_path
        self.time_budget = time_budget
        self._t0 = None  # perf_counter when this process's fit began
        self._seconds_before = float(progress["train_seconds"])  # training clock carried over
        self._paused = 0.0  # seconds of this process spent writing checkpoints
        self._epoch = None
        super().__init__(config, model)

    @property
    def resumable(self) -> bool:
        return isinstance(self, SequentialTrainer)

    def clock(self) -> float:
        """Training seconds so far: this run's, minus checkpoint writing, plus those restored."""
        if self._t0 is None:
            return self._seconds_before
        return self._seconds_before + time.perf_counter() - self._t0 - self._paused

    # ------------------------------------------------------------------ resumption
    def restore_progress(self) -> int:
        """After ``resume_checkpoint``: cut the record back to the checkpoint's epochs; returns them."""
        done = int(self.start_epoch)
        p = self.progress
        p["epoch_seconds"] = p["epoch_seconds"][:done]
        p["curve"] = [c for c in p["curve"] if c["epoch"] < done]
        p["valid_seconds"] = p["valid_seconds"][:len(p["curve"])]
        if p["curve"]:
            # the clock as it stood when the checkpoint's epoch had been validated
            self._seconds_before = p["curve"][-1]["seconds"]
        p["resumed_at_epochs"].append(done)
        return done

    def _write_progress(self) -> None:
        self.progress["train_seconds"] = self.clock()
        if self.progress_path:
            atomic_write_json(self.progress_path, self.progress)

    # ------------------------------------------------------------------ hooks
    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        def after_validation(epoch_idx, valid_score):
            if self.progress["curve"]:
                # RecBole's early stopping resets its counter exactly when the score improved
                self.progress["curve"][-1]["is_best"] = self.cur_step == 0
            if callback_fn is not None:
                callback_fn(epoch_idx, valid_score)

        self._t0 = time.perf_counter()
        return super().fit(train_data, valid_data, verbose=verbose, saved=saved, show_progress=show_progress,
                           callback_fn=after_validation)

    def _budget_check(self) -> None:
        p = self.progress
        if self.time_budget and p["epoch_seconds"]:
            # stop at an epoch boundary when the next epoch (and its validation) would overrun
            per_epoch = (sum(p["epoch_seconds"]) + sum(p["valid_seconds"])) / len(p["epoch_seconds"])
            if self.clock() + per_epoch > self.time_budget:
                raise TimeBudgetReached()

    def _check_time_budget(self, epoch_idx):
        # SequentialTrainer calls this once the -last checkpoint of the previous epoch is written,
        # so a budget-stopped fit can be continued later with more time
        self._budget_check()
        super()._check_time_budget(epoch_idx)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        p = self.progress
        if not self.resumable:
            self._budget_check()
        self._epoch = int(epoch_idx)
        t, paused = time.perf_counter(), self._paused
        result = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        p["epoch_seconds"].append(time.perf_counter() - t - (self._paused - paused))
        return result

    def _valid_epoch(self, valid_data, show_progress=False):
        t = time.perf_counter()
        score, result = super()._valid_epoch(valid_data, show_progress=show_progress)
        self.progress["valid_seconds"].append(time.perf_counter() - t)
        m = metrics(result)
        self.progress["curve"].append({
            "seconds": self.clock(),
            "epoch": self._epoch,
            "ndcg@10": m.get("ndcg@10"),
            "recall@10": m.get("recall@10"),
            "valid_score": json_safe(float(score)),
            "is_best": False,
        })
        return score, result

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        t = time.perf_counter()
        try:
            return super()._save_checkpoint(epoch, verbose=verbose, **kwargs)
        finally:
            self._pause(time.perf_counter() - t)

    def _save_last_checkpoint(self, epoch: int) -> None:
        t = time.perf_counter()
        try:
            self._write_progress()  # first: the record never lags behind the checkpoint
            super()._save_last_checkpoint(epoch)
        finally:
            self._pause(time.perf_counter() - t)

    def _pause(self, seconds: float) -> None:
        self._paused += seconds
        self.progress["checkpoint_seconds"] += seconds


def harness_trainer_class(base: type) -> type:
    """``base`` (from ``get_trainer``) with the harness hooks; RecBole's plain Trainer becomes the
    plugin's resumable SequentialTrainer (see the module docstring)."""
    inner = SequentialTrainer if base is Trainer else base
    return type(f"Harness{inner.__name__}", (HarnessTrainerMixin, inner), {"__module__": __name__})
