"""RecBole's trainer with what the plugin's models need on top of it.

* AdamW-style weight decay without decay on biases, LayerNorm and the LRU's log parameters,
  when the model provides ``optimizer_param_groups`` (RecBole's own applies decay to all).
* A NaN or infinite loss stops training with one clear message (:class:`NonFiniteLossError`);
  the best checkpoint written so far is left untouched (checkpoints are written atomically, see
  :mod:`recbole_lru.compat`).
* Exact resumption. RecBole saves a checkpoint only when validation improves, which is not
  enough to continue a run where it stopped. After every epoch this trainer also writes a
  *last* checkpoint, ``<best checkpoint stem>-last.pth``, holding the model and optimizer, the
  epoch, the early-stopping state, the best result so far, the path of the best checkpoint and
  every random state training draws from (torch, CUDA, numpy, Python and the training
  dataloader's shuffling generator). :meth:`SequentialTrainer.resume_checkpoint` on that file
  restores all of it, so a resumed run ends with the same metrics as an uninterrupted one. The
  file is removed when training completes; it stays behind when a run is interrupted or fails.
  Every value in it is a tensor, a plain container or a type the safe loader allows.
"""
from __future__ import annotations

import os
import random
import time

import numpy as np
import torch
from recbole.trainer import Trainer

from . import distributed
from .checkpoint import CheckpointError, checkpoint_config, load_weights
from .compat import load_checkpoint, save_checkpoint

__all__ = ["SequentialTrainer", "NonFiniteLossError", "TimeBudgetReached", "last_checkpoint_path",
           "read_training_checkpoint"]

LAST_KIND = "recbole_lru.last"
_REQUIRED_KEYS = ("state_dict", "optimizer", "epoch", "cur_step", "best_valid_score")


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss."""


class TimeBudgetReached(Exception):
    """``time_budget`` (training seconds) would be overrun by the next epoch."""


def last_checkpoint_path(saved_model_file: str) -> str:
    """``saved/LRURec-Jan-01-2025_10-00-00.pth`` -> ``saved/LRURec-Jan-01-2025_10-00-00-last.pth``."""
    stem, ext = os.path.splitext(os.fspath(saved_model_file))
    return f"{stem}-last{ext or '.pth'}"


# --------------------------------------------------------------------------------------------
# Random states as tensors and plain values (numpy's state holds an array and a str)
# --------------------------------------------------------------------------------------------
def _capture_rng(loader_generator) -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": str(name), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    if isinstance(loader_generator, torch.Generator):
        state["train_loader"] = loader_generator.get_state()
    return state


def read_training_checkpoint(path, model_name: str, map_location=None) -> dict:
    """A checkpoint written during training of ``model_name`` (best or ``-last``), or one clear error."""
    path = os.fspath(path)
    checkpoint = load_checkpoint(path, map_location=map_location)
    missing = [k for k in ("config", *_REQUIRED_KEYS) if not isinstance(checkpoint, dict) or k not in checkpoint]
    if missing:
        raise CheckpointError(f"{path} is not a RecBole training checkpoint (it lacks {missing}); pass a .pth "
                              f"file written during training")
    config = checkpoint_config(checkpoint, path)
    if config["model"].lower() != str(model_name).lower():
        raise CheckpointError(f"{path} is a {config['model']} checkpoint; resume it with --model={config['model']}.")
    bad = [k for k in ("epoch", "cur_step") if type(checkpoint[k]) is not int]
    if bad or not isinstance(checkpoint["best_valid_score"], (int, float, np.floating)):
        raise CheckpointError(f"{path} holds a malformed {bad[0] if bad else 'best_valid_score'}: the file is damaged")
    return checkpoint


def _restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# settings that may change between a run and its resumption without changing the result
_FREE_TO_CHANGE = {"epochs", "checkpoint_dir", "show_progress", "device", "gpu_id", "use_gpu", "data_path",
                   "config_files", "log_wandb", "state", "worker", "eval_batch_size", "nproc", "world_size",
                   "ip", "port", "offset", "local_rank", "single_spec", "wandb_project", "benchmark_filename"}


def _config_changes(saved, current) -> list[str]:
    a, b = saved.final_config_dict, current.final_config_dict
    return sorted(f"{k} ({a.get(k)!r} -> {b.get(k)!r})" for k in set(a) | set(b)
                  if k not in _FREE_TO_CHANGE and a.get(k) != b.get(k))


def _loss_kind(loss) -> str:
    if torch.isfinite(loss).all():
        return "nan or inf in another process"
    return "nan" if torch.isnan(loss).any() else "inf"


class SequentialTrainer(Trainer):
    def __init__(self, config, model):
        super().__init__(config, model)
        # each process's clock names its own file: all ranks use rank 0's name
        self.saved_model_file = distributed.from_main(self.saved_model_file, config)
        self._fit_clock = None
        self._write_last = False
        self._fit_start_epoch = 0
        self._train_data = None
        self._resumed_last = False
        self._pending_loader_state = None

    @property
    def last_checkpoint_file(self) -> str:
        """Where this run's resumable checkpoint is written after every epoch."""
        return last_checkpoint_path(self.saved_model_file)

    # ------------------------------------------------------------------ optimizer
    def _build_optimizer(self, **kwargs):
        if "params" not in kwargs and hasattr(self.model, "optimizer_param_groups"):
            weight_decay = kwargs.get("weight_decay", self.weight_decay) or 0.0
            kwargs["params"] = self.model.optimizer_param_groups(weight_decay)
        return super()._build_optimizer(**kwargs)

    # ------------------------------------------------------------------ failures
    def _check_nan(self, loss):
        # under DDP every rank stops at the same step, whichever rank saw the bad loss
        if distributed.any_rank(not torch.isfinite(loss).all(), self.config):
            saved = getattr(self, "saved_model_file", None)
            if saved and os.path.isfile(saved):
                kept = f"The best checkpoint so far is kept at {saved}"
            else:
                kept = "No checkpoint was written (the loss was not finite before the first validation)"
            last = self.last_checkpoint_file if saved else None
            if last and os.path.isfile(last):
                kept += f"; resume from the last good epoch with --resume={last}"
            raise NonFiniteLossError(
                f"Training loss is {_loss_kind(loss)}: training stopped. "
                f"{kept}. Lower learning_rate, set clip_grad_norm (e.g. {{max_norm: 5.0}}), or check the data."
            )

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        # RecBole lets the first process of every machine write; one writer is enough (see evaluate)
        if distributed.is_main(self.config):
            config, self.config = self.config, distributed.single_process_config(self.config)
            try:  # the file loads in one process too
                super()._save_checkpoint(epoch, verbose=verbose, **kwargs)
            finally:
                self.config = config

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        from recbole.data.dataloader import FullSortEvalDataLoader

        if eval_data and distributed.is_distributed(self.config) and isinstance(eval_data, FullSortEvalDataLoader):
            # RecBole's DistributedSampler pads the last shard, counting some users twice
            return distributed.evaluate(self, eval_data, load_best_model, model_file, show_progress)
        if eval_data and load_best_model:  # RecBole's own load would fail on another model with a traceback
            checkpoint_file = model_file or self.saved_model_file
            load_weights(self.model, load_checkpoint(checkpoint_file, map_location=self.device), checkpoint_file)
            self.logger.info(f"Loading model structure and parameters from {checkpoint_file}")
        return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)

    # ------------------------------------------------------------------ last checkpoint
    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        # The state at the start of epoch e is exactly the state at the end of epoch e-1
        # (training, validation and early stopping done): that is what the last checkpoint holds.
        if self._write_last and epoch_idx > self._fit_start_epoch:
            self._save_last_checkpoint(epoch_idx - 1)
        self._check_time_budget(epoch_idx)
        if distributed.is_distributed(self.config):
            train_data = distributed.ShardedTrainData(train_data, self.config, epoch_idx)
        return super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)

    def _check_time_budget(self, epoch_idx: int) -> None:
        """Stop before an epoch that would end past ``time_budget`` seconds of this fit, judged
        from the mean epoch (with its validation) so far; rank 0's clock decides for all ranks."""
        budget = self.config["time_budget"]
        done = epoch_idx - self._fit_start_epoch
        elapsed = time.perf_counter() - self._fit_clock
        over = bool(budget) and done > 0 and elapsed + elapsed / done > float(budget)
        if distributed.from_main(over, self.config):
            raise TimeBudgetReached(f"time_budget={budget} s reached after {done} epochs")

    def _save_last_checkpoint(self, epoch: int) -> None:
        state = {
            "kind": LAST_KIND,
            "config": distributed.single_process_config(self.config),
            "epoch": int(epoch),
            "cur_step": int(self.cur_step),
            "best_valid_score": float(self.best_valid_score),
            "best_valid_result": self.best_valid_result,
            "best_model_file": str(self.saved_model_file),
            "state_dict": self.model.state_dict(),
            "other_parameter": self.model.other_parameter(),
            "optimizer": self.optimizer.state_dict(),
            "rng_state": _capture_rng(getattr(self._train_data, "generator", None)),
        }
        save_checkpoint(state, self.last_checkpoint_file)

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        self._train_data = train_data
        generator = getattr(train_data, "generator", None)
        if self._pending_loader_state is not None and isinstance(generator, torch.Generator):
            generator.set_state(self._pending_loader_state.cpu())
        self._pending_loader_state = None
        if self._resumed_last and self.start_epoch >= self.epochs:
            # RecBole would re-save the current model over the best checkpoint here; keep the best.
            self.logger.info(f"The checkpoint already reached epochs={self.epochs}: nothing left to train.")
            return self.best_valid_score, self.best_valid_result
        self._write_last = bool(saved) and distributed.is_main(self.config)
        self._fit_start_epoch = self.start_epoch
        self._fit_clock = time.perf_counter()
        try:
            result = super().fit(train_data, valid_data, verbose=verbose, saved=saved,
                                 show_progress=show_progress, callback_fn=callback_fn)
        except KeyboardInterrupt as err:
            last = self.last_checkpoint_file
            if self._write_last and os.path.isfile(last):
                err.resume_file = last
                self.logger.warning(f"Training interrupted. Continue it with --resume={last}")
            raise
        except TimeBudgetReached as stop:
            hint = f"; continue it with --resume={self.last_checkpoint_file}" if self._write_last else ""
            self.logger.info(f"{stop}: training stopped{hint}")
            return self.best_valid_score, self.best_valid_result  # the -last checkpoint stays
        finally:
            self._write_last = False
        if saved and distributed.is_main(self.config) and os.path.isfile(self.last_checkpoint_file):
            os.remove(self.last_checkpoint_file)  # training is complete; the best checkpoint remains
        return result

    # ------------------------------------------------------------------ resume
    def resume_checkpoint(self, resume_file):
        """Continue training from a checkpoint.

        A ``-last`` checkpoint written by this trainer restores everything training depends on
        (model, optimizer, epoch, early stopping, best result, random states), so training goes on
        exactly as if it had not stopped, and the best model keeps being written to the same file.
        A best-model checkpoint (RecBole's) restores what RecBole restores: model, optimizer, epoch,
        early-stopping counter and best score.
        """
        resume_file = str(resume_file)
        checkpoint = read_training_checkpoint(resume_file, self.config["model"], map_location=self.device)
        changed = _config_changes(checkpoint["config"], self.config)
        if changed:
            self.logger.warning(f"Resuming {resume_file} with settings that differ from the run that "
                                f"wrote it: {', '.join(changed)}. The result will differ from the original run's.")
        load_weights(self.model, checkpoint, resume_file)
        try:
            self.optimizer.load_state_dict(checkpoint["optimizer"])
        except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as err:
            raise CheckpointError(f"{resume_file} holds an optimizer state that does not fit this model's "
                                  f"optimizer ({err}); resume with the config the run was started with.") from None
        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]

        if checkpoint.get("kind") == LAST_KIND:
            self.best_valid_result = checkpoint.get("best_valid_result")
            self.saved_model_file = self._locate_best(checkpoint, resume_file)
            try:
                _restore_rng(checkpoint["rng_state"])
                loader_state = checkpoint["rng_state"].get("train_loader")
            except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as err:
                raise CheckpointError(f"{resume_file} holds malformed random states ({type(err).__name__}: "
                                      f"{err}): the file is damaged") from None
            if loader_state is not None and not isinstance(loader_state, torch.Tensor):
                raise CheckpointError(f"{resume_file} holds a malformed data-loader state: the file is damaged")
            self._pending_loader_state = loader_state
            self._resumed_last = True
        else:
            self.saved_model_file = resume_file
        self.logger.info(f"Checkpoint loaded. Resume training from epoch {self.start_epoch}")

    def _locate_best(self, checkpoint: dict, resume_file: str) -> str:
        """Where the resumed run's best checkpoint is, and keeps being written.

        The path a ``-last`` file records is data: only its file name is used, and only inside the
        resumed file's folder or this run's ``checkpoint_dir`` (in that order), so a crafted file
        cannot make the run write (best model) or delete (``-last``) anything elsewhere.
        """
        recorded = checkpoint.get("best_model_file")
        name = os.path.basename(recorded) if isinstance(recorded, str) else ""
        if not name.endswith(".pth") or name.startswith(".") or name.endswith("-last.pth"):
            raise CheckpointError(f"{resume_file} records its best checkpoint as {recorded!r}, which is not the "
                                  f"name of a best-model .pth file: the file is damaged or crafted.")
        folders = [os.path.dirname(os.path.abspath(resume_file)), os.path.abspath(self.config["checkpoint_dir"])]
        for folder in folders:
            if os.path.isfile(os.path.join(folder, name)):
                return os.path.join(folder, name)
        if checkpoint.get("best_valid_result") is not None:
            raise FileNotFoundError(
                f"The best checkpoint of this run, {name}, is missing (looked next to {resume_file} and in "
                f"checkpoint_dir {folders[1]}). Put it back, or resume from a best checkpoint instead."
            )
        # no validation has happened yet, so no best checkpoint exists: it is written beside the -last file
        return os.path.join(folders[0], name)
