"""Every change ``import recbole_lru`` makes to RecBole (and to the numpy/torch globals RecBole relies on).

RecBole offers no plugin door for what a user does by name (``run_recbole(model='LRURec')``,
``Config(model='LRURec')``, ``HyperTuning``, ``load_data_and_model``), so a few of its lookups are
changed. Each change goes through :func:`patch`, which records the original and the reason;
:func:`undo_all` (``recbole_lru.unregister()``) puts every original back, in reverse order, and
:func:`applied` lists what is in place. What only the plugin's own models need lives in their
classes instead (``WholeSequenceDataset``, ``SequentialTrainer``), not here.

The implementations of three patches live beside the code they belong to and are only applied
here: the numpy aliases and the checkpoint-safe ``torch`` for RecBole's trainer in
:mod:`recbole_lru.compat`, the atomic-file checks in :mod:`recbole_lru.validation`.
"""
from __future__ import annotations

import functools
import importlib
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import catalog, compat, validation

__all__ = ["Patch", "GlobalFlag", "patch", "undo", "original", "applied", "apply_all", "is_applied", "undo_all",
           "run_recboles", "RecBoleVersionWarning", "check_recbole_version"]

_MISSING = object()  # "the attribute did not exist": undo deletes it again


class RecBoleVersionWarning(UserWarning):
    """The installed RecBole is not a version these patches were tested with."""


class GlobalFlag:
    """A process-wide setting behind a getter and a setter (e.g. torch's anomaly mode), so that
    :func:`patch` records and restores it like an attribute."""

    def __init__(self, label: str, get: Callable[[], Any], set: Callable[[Any], None]):
        self.label, self.get, self.set = label, get, set

    def __repr__(self):
        return self.label


@dataclass(frozen=True)
class Patch:
    owner: Any  # a module, a class, a dict (sys.modules) or a GlobalFlag
    name: str
    original: Any  # _MISSING when the attribute did not exist
    value: Any
    why: str

    @property
    def target(self) -> str:
        owner = self.owner
        if isinstance(owner, GlobalFlag):
            return owner.label
        if owner is sys.modules:
            return f"sys.modules[{self.name!r}]"
        prefix = getattr(owner, "__module__", None) if isinstance(owner, type) else None
        base = f"{prefix}.{owner.__qualname__}" if prefix else getattr(owner, "__name__", repr(owner))
        return f"{base}.{self.name}"


_APPLIED: list[Patch] = []
_ALL_APPLIED = False  # apply_all() ran (patch() may also be used on its own, e.g. by an entry point)


def _get(owner, name):
    if isinstance(owner, GlobalFlag):
        return owner.get()
    if isinstance(owner, dict):
        return owner.get(name, _MISSING)
    return vars(owner).get(name, _MISSING)  # the owner's own entry, not an inherited one


def _set(owner, name, value) -> None:
    if isinstance(owner, GlobalFlag):
        owner.set(value)
    elif isinstance(owner, dict):
        if value is _MISSING:
            owner.pop(name, None)
        else:
            owner[name] = value
    elif value is _MISSING:
        if name in vars(owner):
            delattr(owner, name)
    else:
        setattr(owner, name, value)


def patch(owner, name: str, value, why: str) -> Patch:
    """Set ``owner.name = value`` (an item for a dict, the setting for a GlobalFlag), recording the
    original and ``why`` (the RecBole behaviour or issue it answers) for :func:`undo_all`.
    Returns the record, which :func:`undo` takes to undo this one patch early."""
    if any(p.owner is owner and p.name == name for p in _APPLIED):
        raise RuntimeError(f"{owner!r}.{name} is patched already")
    record = Patch(owner, name, _get(owner, name), value, why)
    _APPLIED.append(record)
    _set(owner, name, value)
    return record


def undo(record: Patch) -> None:
    """Undo one patch, e.g. one that an entry point applies only for the length of a run."""
    _APPLIED.remove(record)
    _set(record.owner, record.name, record.original)


def original(owner, name: str):
    """What ``owner.name`` was before this module patched it (the current value if unpatched)."""
    for p in _APPLIED:
        if p.owner is owner and p.name == name:
            return p.original
    return _get(owner, name)


def applied() -> list[Patch]:
    """The patches in place, in the order they were applied."""
    return list(_APPLIED)


def undo_all() -> None:
    """Restore every original, last patch first."""
    global _ALL_APPLIED
    _undo_after(0)
    _ALL_APPLIED = False


def _undo_after(count: int) -> None:
    """Undo the patches applied after the first ``count``, last first."""
    while len(_APPLIED) > count:
        p = _APPLIED.pop()
        _set(p.owner, p.name, p.original)


def _adopt(owners: list, install: Callable[[], None], why: str) -> None:
    """Run an installer written elsewhere, then redo each change it made to ``owners`` through
    :func:`patch`, so that it is recorded and undone like the rest."""
    before = [dict(vars(o)) for o in owners]
    install()
    for owner, old in zip(owners, before):
        now = vars(owner)
        changed = {k: v for k, v in now.items() if old.get(k, _MISSING) is not v}
        for name, value in changed.items():
            _set(owner, name, old.get(name, _MISSING))
            patch(owner, name, value, why)


# --------------------------------------------------------------------------------------------
# Version
# --------------------------------------------------------------------------------------------
_WARNED = []


def check_recbole_version() -> bool:
    """Warn once per process (RecBoleVersionWarning) when RecBole is not a tested version.
    Returns True for a tested version."""
    import recbole

    found = getattr(recbole, "__version__", "unknown")
    if found in catalog.TESTED_RECBOLE:
        return True
    if _WARNED:
        return False
    _WARNED.append(found)
    warnings.warn(
        f"recbole_lru is tested with RecBole {', '.join(catalog.TESTED_RECBOLE)}; found RecBole {found}. "
        f"It changes a few RecBole functions by name (recbole_lru.patches.applied() lists them), which "
        f"may not fit this version: install recbole==1.2.1, or check the results against RecBole's own "
        f"models before trusting them.", RecBoleVersionWarning, stacklevel=4)
    return False


# --------------------------------------------------------------------------------------------
# Wrappers (each takes RecBole's original)
# --------------------------------------------------------------------------------------------
def _wrap_load_internal_config_dict(original_fn):
    recbole_props = Path(importlib.import_module("recbole").__file__).resolve().parent / "properties"

    @functools.wraps(original_fn)
    def _load_internal_config_dict(self, model, model_class, dataset):
        model_yaml = catalog.find_yaml("model", model)
        dataset_yaml = catalog.find_yaml("dataset", dataset)
        if model_yaml is None and dataset_yaml is None:
            return original_fn(self, model, model_class, dataset)
        sample = (recbole_props / "dataset" / "sample.yaml").resolve()
        recbole_dataset = (recbole_props / "dataset" / f"{dataset}.yaml").resolve()
        update = self._update_internal_config_dict

        def load_dataset_yaml():
            config_dict = update(str(dataset_yaml))
            self.parameters["Dataset"] += [k for k in config_dict if k not in self.parameters["Dataset"]]

        # RecBole reads overall -> model -> sample -> dataset -> quick-start yaml through this
        # method; ours slot in where its own files of the same kind would be.
        def ordered_update(file):
            path = Path(file).resolve()
            if model_yaml is not None and path == sample:
                update(str(model_yaml))
            result = update(file)
            if dataset_yaml is not None:
                if path == recbole_dataset or (path == sample and not recbole_dataset.is_file()):
                    load_dataset_yaml()
            return result

        self._update_internal_config_dict = ordered_update
        try:
            return original_fn(self, model, model_class, dataset)
        finally:
            del self._update_internal_config_dict

    return _load_internal_config_dict


def _wrap_get_model(original_fn):
    @functools.wraps(original_fn)
    def get_model(model_name):
        if not isinstance(model_name, str):
            raise catalog.ModelNotFoundError(
                f"model must be a model name (str), got {type(model_name).__name__}")
        if model_name in catalog.MODELS:
            return getattr(importlib.import_module(catalog.MODELS[model_name]), model_name)
        # RecBole finds the file by the lower-case name, then fails with an AttributeError on a
        # wrong case ('SASrec'); exlib models need optional libraries, so RecBole reports those
        exlib = catalog.recbole_model_files().get(model_name.lower()) == "exlib_recommender"
        if not exlib and model_name not in catalog.available_models():
            raise catalog.ModelNotFoundError(catalog.unknown_model_message(model_name))
        return original_fn(model_name)

    return get_model


def run_recboles(rank, *args):
    """Spawn target of ``recbole.quick_start.run(nproc=...)``: a child process unpickles it by
    name, which imports ``recbole_lru`` (and so registers the models) before RecBole's own runs."""
    import recbole.quick_start.quick_start as quick_start

    return original(quick_start, "run_recboles")(rank, *args)


def _wrap_load_data_and_model(original_fn):
    @functools.wraps(original_fn)
    def load_data_and_model(model_file, config_dict=None):
        # RecBole's version unpickles the file with the real torch.load and follows the paths stored
        # in it; the plugin's reads the checkpoint as data and takes every path from the caller.
        from .quick_start import load_data_and_model as safe_load_data_and_model

        return safe_load_data_and_model(model_file, config_dict)

    return load_data_and_model


def _wrap_full_sort_batch_eval(original_fn):
    @functools.wraps(original_fn)
    def _full_sort_batch_eval(self, batched_data):
        interaction, scores, positive_u, positive_i = original_fn(self, batched_data)
        if self.config["mask_history"] and self.config["MODEL_TYPE"].name == "SEQUENTIAL":
            item_seq = interaction[self.model.ITEM_SEQ].to(scores.device)
            # padding id 0 is already -inf; scatter is one kernel, no loop over users
            scores.scatter_(1, item_seq, float("-inf"))
        return interaction, scores, positive_u, positive_i

    return _full_sort_batch_eval


# --------------------------------------------------------------------------------------------
# The patches, in the order they are applied
# --------------------------------------------------------------------------------------------
def _import_recbole():
    """Import the RecBole modules the patches touch (numpy aliases first: RecBole and ray read the
    removed names at import). ray imports pkg_resources, which warns once per process."""
    import numpy as np

    _adopt([np], compat.numpy_aliases,
           "numpy 2 removed np.float_/np.complex_/np.unicode_ (RecBole's Config.compatibility_settings) "
           "and np.bool8 (ray 2.6, imported by recbole.quick_start)")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        for name in ("recbole.utils", "recbole.utils.utils", "recbole.config.configurator",
                     "recbole.quick_start", "recbole.quick_start.quick_start", "recbole.trainer",
                     "recbole.trainer.trainer", "recbole.data.dataset", "recbole.data.dataset.dataset",
                     "recbole.model.sequential_recommender"):
            importlib.import_module(name)


def _patch_models() -> None:
    import recbole.data.dataset as dataset_pkg
    import recbole.model.sequential_recommender as seq_pkg
    import recbole.trainer as trainer_pkg

    why_name = ("get_model imports recbole.model.<kind>.<name.lower()> and knows no external model "
                "(RecBole #489, #1544, #1600)")
    for name, module_path in catalog.MODELS.items():
        module = importlib.import_module(module_path)
        model_cls = getattr(module, name)
        dotted = f"recbole.model.sequential_recommender.{name.lower()}"
        patch(sys.modules, dotted, module, why_name)
        patch(seq_pkg, name.lower(), module, why_name)
        patch(seq_pkg, name, model_cls, why_name)
        dataset_cls = getattr(model_cls, "DATASET_CLASS", None)
        if dataset_cls is not None:
            patch(dataset_pkg, f"{name}Dataset", dataset_cls,
                  "create_dataset looks up recbole.data.dataset.<Model>Dataset")
        trainer_cls = getattr(model_cls, "TRAINER_CLASS", None)
        if trainer_cls is not None:
            patch(trainer_pkg, f"{name}Trainer", trainer_cls, "get_trainer looks up recbole.trainer.<Model>Trainer")


def _patch_lookups() -> None:
    import recbole.config.configurator as configurator
    import recbole.quick_start as quick_start_pkg
    import recbole.quick_start.quick_start as quick_start
    import recbole.utils as utils
    import recbole.utils.utils as utils_utils
    from recbole.config.configurator import Config
    from recbole.trainer.trainer import Trainer

    patch(Config, "_load_internal_config_dict", _wrap_load_internal_config_dict(Config._load_internal_config_dict),
          "Config reads per-model and per-dataset YAML only from RecBole's own properties/ folder")
    get_model = _wrap_get_model(utils_utils.get_model)
    # bound by name into three more modules at their import, so each binding is replaced
    for module in (utils_utils, utils, configurator, quick_start):
        patch(module, "get_model", get_model,
              "RecBole's ValueError for an unknown name lists nothing: one ModelNotFoundError with close names")
    load_data_and_model = _wrap_load_data_and_model(quick_start.load_data_and_model)
    # quick_start/__init__.py binds both names again
    for module in (quick_start, quick_start_pkg):
        patch(module, "run_recboles", run_recboles,
              "processes spawned by run(nproc>1) import only RecBole, so they would not know the models")
        patch(module, "load_data_and_model", load_data_and_model,
              "torch >= 2.6 loads weights-only and RecBole checkpoints pickle their Config (RecBole #2215); "
              "the checkpoint is read as data (recbole_lru.checkpoint) and its stored paths are ignored")
    patch(Trainer, "_full_sort_batch_eval", _wrap_full_sort_batch_eval(Trainer._full_sort_batch_eval),
          "mask_history: True removes the user's input items from full ranking (the LRURec paper's "
          "protocol; RecBole masks only item 0); nothing changes unless a config asks for it")


def _patch_checkpoints_and_data() -> None:
    import recbole.quick_start.quick_start as quick_start
    import recbole.trainer.trainer as trainer
    from recbole.data.dataset.dataset import Dataset

    _adopt([trainer, quick_start], compat.safe_checkpoints,
           "torch >= 2.6 loads weights-only and RecBole's checkpoints pickle its Config (RecBole #2215): "
           "the trainer's torch.load becomes the allow-list loader, torch.save an atomic write")
    _adopt([Dataset], validation.install,
           "a malformed atomic file fails deep in pandas: one error naming the file and the fix")


_DISTRIBUTED_WHY = {
    "_init_device": "RecBole hard-codes the NCCL backend and asserts one GPU per process, so run(nproc>1) "
                    "fails on CPU: the backend follows the device (gloo on CPU, NCCL on GPUs; dist_backend "
                    "overrides) and too few GPUs get one clear line",
    "DistributedDataParallel": "RecBole passes device_ids=[local_rank], which DDP refuses for a module on the CPU",
    "get_tensorboard": "every rank would write its own TensorBoard folder; only rank 0 writes",
    "ensure_dir": "ensure_dir checks, then creates: processes sharing a folder race, and one fails with "
                  "FileExistsError (seen with two ranks creating checkpoint_dir)",
}


def _patch_distributed() -> None:
    from . import distributed  # already imported by the plugin's trainer

    for path, attr, new, _key in distributed.PATCHES:
        patch(distributed.patch_owner(path), attr, new, _DISTRIBUTED_WHY[attr])


def _patch_anomaly_mode() -> None:
    import torch

    flag = GlobalFlag("torch autograd anomaly mode", torch.is_anomaly_enabled, torch.set_anomaly_enabled)
    patch(flag, "enabled", False,
          "recbole/model/sequential_recommender/sine.py turns anomaly detection on for the whole process "
          "at import, a fifth of every model's training step")


def apply_all() -> None:
    """Apply every patch once (a second call does nothing until :func:`undo_all`)."""
    global _ALL_APPLIED
    if _ALL_APPLIED:
        return
    check_recbole_version()
    count = len(_APPLIED)
    try:
        _import_recbole()
        _patch_models()
        _patch_lookups()
        _patch_checkpoints_and_data()
        _patch_anomaly_mode()
        _patch_distributed()
    except BaseException:
        _undo_after(count)  # never leave RecBole half patched
        raise
    _ALL_APPLIED = True


def is_applied() -> bool:
    """True between :func:`apply_all` and :func:`undo_all`."""
    return _ALL_APPLIED
