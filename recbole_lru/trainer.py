"""RecBole's trainer with the two things the plugin's models need on top of it.

* AdamW-style weight decay without decay on biases, LayerNorm and the LRU's log parameters,
  when the model provides ``optimizer_param_groups`` (RecBole's own applies decay to all).
* A non-finite loss stops training with one clear message; the best checkpoint written so far
  is left untouched (checkpoints are written atomically, see :mod:`recbole_lru.compat`).
"""
from __future__ import annotations


import torch
from recbole.trainer import Trainer

__all__ = ["SequentialTrainer", "NonFiniteLossError"]


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss."""


class SequentialTrainer(Trainer):
    def _build_optimizer(self, **kwargs):
        if "params" not in kwargs and hasattr(self.model, "optimizer_param_groups"):
            weight_decay = kwargs.get("weight_decay", self.weight_decay) or 0.0
            kwargs["params"] = self.model.optimizer_param_groups(weight_decay)
        return super()._build_optimizer(**kwargs)

    def _check_nan(self, loss):
        if not torch.isfinite(loss).all():
            saved = getattr(self, "saved_model_file", None)
            raise NonFiniteLossError(
                f"Training loss is {'nan' if torch.isnan(loss).any() else 'inf'}: training stopped. "
                f"The last good checkpoint (best validation so far) is kept at {saved}. "
                f"Lower learning_rate, set clip_grad_norm (e.g. {{max_norm: 5.0}}), or check the data."
            )
