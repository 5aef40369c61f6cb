"""Named shims that let RecBole 1.2.1 run on numpy 2, torch >= 2.6 and pandas 2.

Everything here is applied once, by :func:`apply` (``import recbole_lru`` calls it). Each shim
only adds what is missing; none changes how RecBole's own models compute.

* ``numpy_aliases``: RecBole's ``Config.compatibility_settings`` reads ``np.float_``,
  ``np.complex_`` and ``np.unicode_`` and ray 2.6 reads ``np.bool8``; numpy 2 removed them.
* ``safe_checkpoints``: torch >= 2.6 loads with ``weights_only=True`` and RecBole checkpoints
  pickle its ``Config``. Instead of falling back to full unpickling (which runs arbitrary code
  from any file a user is handed), RecBole's checkpoint types are added to torch's allow-list and
  RecBole's trainer and quick-start read checkpoints through :func:`load_checkpoint`, which refuses
  anything else with :class:`UnsafeCheckpointError`.
* ``atomic_saves``: RecBole's trainer writes checkpoints through :func:`save_checkpoint`, a
  temporary file renamed into place, so a crash mid-save never leaves a truncated best model.
"""
from __future__ import annotations

import os
import pickle
import tempfile
import types
import warnings

import numpy as np
import torch

__all__ = [
    "apply",
    "load_checkpoint",
    "save_checkpoint",
    "UnsafeCheckpointError",
    "checkpoint_safe_globals",
]

_APPLIED = False


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint holds objects outside the allow-list of RecBole checkpoint types."""


# --------------------------------------------------------------------------------------------
# numpy 2
# --------------------------------------------------------------------------------------------
_NUMPY_ALIASES = {
    "float_": "float64",
    "complex_": "complex128",
    "unicode_": "str_",
    "bool8": "bool_",
    "int_": "int_",
    "object_": "object_",
    "string_": "bytes_",
}


def numpy_aliases() -> None:
    for alias, target in _NUMPY_ALIASES.items():
        if alias not in np.__dict__:
            setattr(np, alias, getattr(np, target))


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------
def checkpoint_safe_globals() -> list:
    """Exactly the non-tensor types a RecBole 1.2.1 checkpoint contains.

    A checkpoint is ``{"config": Config, "epoch": int, ..., "state_dict": ..., "optimizer": ...}``;
    the Config carries its enums and the YAML loader class it was parsed with.
    """
    import yaml
    from recbole.config.configurator import Config
    from recbole.utils.enum_type import EvaluatorType, InputType, ModelType, FeatureSource, FeatureType

    return [Config, ModelType, InputType, EvaluatorType, FeatureSource, FeatureType, yaml.FullLoader]


def load_checkpoint(path, map_location=None):
    """``torch.load`` restricted to tensors, plain containers and RecBole's checkpoint types.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UnsafeCheckpointError: the file holds any other object (it is never unpickled).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint file not found: {path}")
    with torch.serialization.safe_globals(checkpoint_safe_globals()):
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as err:
            raise UnsafeCheckpointError(
                f"Refusing to load {path}: it contains objects that are not part of a RecBole "
                f"checkpoint, and loading it would run arbitrary code. Only load checkpoints you "
                f"trained yourself. Details: {str(err).splitlines()[0]}"
            ) from None
        except (RuntimeError, EOFError) as err:
            raise UnsafeCheckpointError(
                f"Cannot read checkpoint {path}: the file is truncated or not a torch checkpoint ({err})."
            ) from None


def save_checkpoint(obj, path, **kwargs) -> None:
    """``torch.save`` to a temporary file in the same folder, then an atomic rename."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pth", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh, **kwargs)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


class _TorchForRecBole(types.ModuleType):
    """Stands in for ``torch`` inside RecBole's trainer and quick-start modules only:
    ``load`` is the safe loader, ``save`` the atomic writer, everything else is torch itself."""

    def __init__(self):
        super().__init__("torch")

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def load(f, map_location=None, **_ignored):
        return load_checkpoint(f, map_location=map_location)

    @staticmethod
    def save(obj, f, **kwargs):
        if isinstance(f, (str, os.PathLike)):
            return save_checkpoint(obj, f, **kwargs)
        return torch.save(obj, f, **kwargs)


def safe_checkpoints() -> None:
    import recbole.quick_start.quick_start as quick_start
    import recbole.trainer.trainer as trainer

    proxy = _TorchForRecBole()
    trainer.torch = proxy
    # load_data_and_model does a local ``import torch``; it is wrapped in registry.py instead.
    quick_start.torch = proxy


def apply() -> None:
    """Apply every shim once. Safe to call repeatedly."""
    global _APPLIED
    if _APPLIED:
        return
    numpy_aliases()
    # ray (imported by recbole.quick_start) imports pkg_resources, which warns on every start
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    safe_checkpoints()
    _APPLIED = True
