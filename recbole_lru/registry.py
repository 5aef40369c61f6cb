"""Makes the plugin's models, datasets and YAML files visible to RecBole by name.

RecBole finds a model by importing ``recbole.model.<kind>.<name.lower()>`` (``get_model``), a
dataset class by attribute ``recbole.data.dataset.<Model>Dataset`` (``create_dataset``), a trainer
by ``recbole.trainer.<Model>Trainer`` (``get_trainer``), and per-model / per-dataset YAML only in
its own ``properties/`` folder. :func:`register` plugs into each of those lookups once:

* each model module is placed in ``sys.modules`` under RecBole's dotted name, so every caller of
  ``get_model`` (Config, run_recbole, objective_function, load_data_and_model, HyperTuning) finds it;
* ``Config._load_internal_config_dict`` also reads ``properties/model/<Model>.yaml`` and
  ``properties/dataset/<dataset>.yaml`` from this package, at the same priority as RecBole's own;
* ``get_model`` gives one clear error listing the available models for an unknown name;
* a dataset that is neither on disk nor downloadable gives one clear error naming the folder;
* the processes that ``recbole.quick_start.run(nproc=...)`` spawns import this package first;
* ``mask_history: True`` in any sequential model's config removes the user's input items from
  full-ranking evaluation (the LRURec paper's protocol; RecBole itself masks only item 0).

Nothing changes for RecBole's own models unless a config asks for it.
"""
from __future__ import annotations

import functools
import importlib
import os
import pkgutil
import sys
import sysconfig
from pathlib import Path

from . import compat, validation

__all__ = [
    "register",
    "MODELS",
    "available_models",
    "properties_dirs",
    "find_yaml",
    "ModelNotFoundError",
    "DatasetNotFoundError",
]

# name -> module that defines the class (one SequentialRecommender per file)
MODELS = {
    "LRURec": "recbole_lru.models.lrurec",
    "LinRec": "recbole_lru.models.linrec",
    "SASRecWS": "recbole_lru.models.sasrec_ws",
}

_REGISTERED = False


class ModelNotFoundError(ValueError):
    """An unknown model name."""


class DatasetNotFoundError(FileNotFoundError):
    """A dataset that is not on disk and cannot be downloaded."""


# --------------------------------------------------------------------------------------------
# YAML lookup
# --------------------------------------------------------------------------------------------
def properties_dirs() -> list[Path]:
    """Folders holding this plugin's ``model/``, ``dataset/`` and ``hyper/`` YAML.

    A source checkout or editable install reads the top-level ``properties/``; a regular
    install reads the copy installed under ``<prefix>/share/recbole-lru/properties``.
    """
    here = Path(__file__).resolve().parent
    candidates = [
        here.parent / "properties",
        Path(sysconfig.get_path("data")) / "share" / "recbole-lru" / "properties",
        Path(sys.prefix) / "share" / "recbole-lru" / "properties",
    ]
    seen, out = set(), []
    for c in candidates:
        if c.is_dir() and c not in seen:
            seen.add(c)
            out.append(c)
    return out


def find_yaml(kind: str, name: str) -> Path | None:
    """This plugin's ``properties/<kind>/<name>.yaml``, or None."""
    for root in properties_dirs():
        f = root / kind / f"{name}.yaml"
        if f.is_file():
            return f
    return None


def _patch_config():
    from recbole.config.configurator import Config

    original = Config._load_internal_config_dict
    if getattr(original, "_recbole_lru", False):
        return
    recbole_props = Path(importlib.import_module("recbole").__file__).resolve().parent / "properties"

    @functools.wraps(original)
    def _load_internal_config_dict(self, model, model_class, dataset):
        model_yaml = find_yaml("model", model)
        dataset_yaml = find_yaml("dataset", dataset)
        if model_yaml is None and dataset_yaml is None:
            return original(self, model, model_class, dataset)
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
            return original(self, model, model_class, dataset)
        finally:
            del self._update_internal_config_dict

    _load_internal_config_dict._recbole_lru = True
    Config._load_internal_config_dict = _load_internal_config_dict


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------
_RECBOLE_KINDS = (
    "general_recommender",
    "context_aware_recommender",
    "sequential_recommender",
    "knowledge_aware_recommender",
    "exlib_recommender",
)


@functools.lru_cache(maxsize=1)
def _recbole_model_files() -> dict:
    """RecBole's own model modules by lower-case name, found without importing them."""
    root = Path(importlib.import_module("recbole.model").__file__).parent
    found = {}
    for kind in _RECBOLE_KINDS:
        for info in pkgutil.iter_modules([str(root / kind)]):
            found.setdefault(info.name, kind)
    return found


def available_models() -> list[str]:
    """Model names RecBole can build after ``import recbole_lru`` (classes, not files)."""
    names = set(MODELS)
    for kind in _RECBOLE_KINDS[:-1]:
        pkg = importlib.import_module(f"recbole.model.{kind}")
        for attr, obj in vars(pkg).items():
            if isinstance(obj, type) and attr.lower() in _recbole_model_files():
                names.add(attr)
    return sorted(names, key=str.lower)


def _patch_get_model():
    import recbole.config.configurator as configurator
    import recbole.quick_start.quick_start as quick_start
    import recbole.utils as utils
    import recbole.utils.utils as utils_utils

    original = utils_utils.get_model
    if getattr(original, "_recbole_lru", False):
        return

    @functools.wraps(original)
    def get_model(model_name):
        if not isinstance(model_name, str):
            raise ModelNotFoundError(f"model must be a model name (str), got {type(model_name).__name__}")
        lower = model_name.lower()
        if model_name in MODELS:
            return getattr(importlib.import_module(MODELS[model_name]), model_name)
        if lower not in _recbole_model_files() or lower in {m.lower() for m in MODELS}:
            raise ModelNotFoundError(
                f"Unknown model '{model_name}'. Names are case-sensitive. Available models: "
                + ", ".join(available_models())
            )
        return original(model_name)

    get_model._recbole_lru = True
    for module in (utils, utils_utils, configurator, quick_start):
        module.get_model = get_model


def _register_models():
    import recbole.model.sequential_recommender as seq_pkg
    import recbole.trainer as trainer_pkg
    import recbole.data.dataset as dataset_pkg

    for name, module_path in MODELS.items():
        module = importlib.import_module(module_path)
        model_cls = getattr(module, name)
        dotted = f"recbole.model.sequential_recommender.{name.lower()}"
        sys.modules[dotted] = module
        setattr(seq_pkg, name.lower(), module)
        setattr(seq_pkg, name, model_cls)
        # create_dataset looks up recbole.data.dataset.<Model>Dataset
        dataset_cls = getattr(model_cls, "DATASET_CLASS", None)
        if dataset_cls is not None:
            setattr(dataset_pkg, f"{name}Dataset", dataset_cls)
        trainer_cls = getattr(model_cls, "TRAINER_CLASS", None)
        if trainer_cls is not None:
            setattr(trainer_pkg, f"{name}Trainer", trainer_cls)


# --------------------------------------------------------------------------------------------
# Datasets that are missing offline
# --------------------------------------------------------------------------------------------
def _patch_download():
    from recbole.data.dataset.dataset import Dataset

    original = Dataset._download
    if getattr(original, "_recbole_lru", False):
        return

    @functools.wraps(original)
    def _download(self):
        folder = os.path.abspath(self.dataset_path)
        hint = (
            f"Dataset '{self.dataset_name}' was not found: no file {folder}{os.sep}"
            f"{self.dataset_name}.inter. Put the atomic files (<name>.inter, optionally .user/.item) "
            f"in that folder, or point RecBole at their parent folder with --data_path=DIR "
            f"(config key data_path)."
        )
        try:
            url = self._get_download_url("url")
        except Exception:
            raise DatasetNotFoundError(hint + " RecBole has no download link for this name.") from None
        try:
            return original(self)
        except (OSError, ValueError) as err:  # URLError is an OSError
            raise DatasetNotFoundError(f"{hint} Downloading it from {url} failed ({err}).") from None
        except SystemExit:
            raise DatasetNotFoundError(hint + " The download was declined.") from None

    _download._recbole_lru = True
    Dataset._download = _download


# --------------------------------------------------------------------------------------------
# Multi-process runs
# --------------------------------------------------------------------------------------------
def run_recboles(rank, *args):
    """Spawn target for ``recbole.quick_start.run(nproc=...)``: unpickling it in a child
    process imports this package, so the child resolves the plugin's models by name too."""
    register()
    from recbole.quick_start.quick_start import _original_run_recboles

    return _original_run_recboles(rank, *args)


def _patch_spawn():
    import recbole.quick_start as quick_start_pkg
    import recbole.quick_start.quick_start as quick_start

    if quick_start.run_recboles is run_recboles:
        return
    quick_start._original_run_recboles = quick_start.run_recboles
    quick_start.run_recboles = run_recboles
    quick_start_pkg.run_recboles = run_recboles


def _patch_load_data_and_model():
    import recbole.quick_start as quick_start_pkg
    import recbole.quick_start.quick_start as quick_start
    import torch

    original = quick_start.load_data_and_model
    if getattr(original, "_recbole_lru", False):
        return

    @functools.wraps(original)
    def load_data_and_model(model_file):
        # Validate with the safe loader first: RecBole's version calls the real torch.load.
        compat.load_checkpoint(model_file, map_location="cpu")
        with torch.serialization.safe_globals(compat.checkpoint_safe_globals()):
            return original(model_file)

    load_data_and_model._recbole_lru = True
    quick_start.load_data_and_model = load_data_and_model
    quick_start_pkg.load_data_and_model = load_data_and_model


# --------------------------------------------------------------------------------------------
# History-masked full ranking
# --------------------------------------------------------------------------------------------
def _patch_history_mask():
    import torch
    from recbole.trainer.trainer import Trainer

    original = Trainer._full_sort_batch_eval
    if getattr(original, "_recbole_lru", False):
        return

    @functools.wraps(original)
    def _full_sort_batch_eval(self, batched_data):
        interaction, scores, positive_u, positive_i = original(self, batched_data)
        if self.config["mask_history"] and self.config["MODEL_TYPE"].name == "SEQUENTIAL":
            item_seq = interaction[self.model.ITEM_SEQ].to(scores.device)
            # padding id 0 is already -inf; scatter is one kernel, no loop over users
            scores.scatter_(1, item_seq, float("-inf"))
        return interaction, scores, positive_u, positive_i

    _full_sort_batch_eval._recbole_lru = True
    Trainer._full_sort_batch_eval = _full_sort_batch_eval


def register() -> None:
    """Apply the compatibility shims and plug the models into RecBole. Idempotent."""
    global _REGISTERED
    if _REGISTERED:
        return
    compat.apply()
    _patch_config()
    _patch_get_model()
    _patch_download()
    _patch_spawn()
    _patch_load_data_and_model()
    _patch_history_mask()
    validation.install()
    _register_models()
    compat.no_anomaly_mode()
    _REGISTERED = True
