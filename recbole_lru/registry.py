"""Makes the plugin's models and YAML files visible to RecBole by name, and takes them away again.

:func:`register` (run by ``import recbole_lru``) applies :mod:`recbole_lru.patches`, after which
``model='LRURec'`` works wherever RecBole takes a model name: ``Config``, ``run_recbole``, ``run``
(also with ``nproc > 1``), ``objective_function``, ``HyperTuning``, ``load_data_and_model``.
:func:`unregister` restores every RecBole function, attribute and ``sys.modules`` entry it changed.

The lookups themselves (model names, YAML folders) are in :mod:`recbole_lru.catalog`.
"""
from __future__ import annotations

from . import patches
from .catalog import (
    MODELS,
    DatasetNotFoundError,
    ModelNotFoundError,
    available_models,
    find_yaml,
    properties_dirs,
)
from .patches import run_recboles

__all__ = [
    "register",
    "unregister",
    "is_registered",
    "MODELS",
    "available_models",
    "properties_dirs",
    "find_yaml",
    "ModelNotFoundError",
    "DatasetNotFoundError",
    "run_recboles",
]


def register() -> None:
    """Plug the models into RecBole (:mod:`recbole_lru.patches` lists each change). Idempotent."""
    patches.apply_all()


def unregister() -> None:
    """Undo :func:`register`: RecBole's functions, attributes and ``sys.modules`` are the originals
    again. ``register()`` plugs the models back in."""
    patches.undo_all()


def is_registered() -> bool:
    return patches.is_applied()
