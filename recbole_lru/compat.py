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
* ``no_anomaly_mode``: RecBole switches autograd anomaly detection on at import (a debugging aid
  left on in ``sine.py``), which slows every model's backward; it is switched off again.
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
    "atomic_write",
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
    from recbole.utils.enum_type import EvaluatorType, FeatureSource, FeatureType, InputType, ModelType

    # numpy scalars (e.g. a best_valid_score) pickle as multiarray.scalar(dtype, bytes)
    numpy_types = [np.dtype, np._core.multiarray.scalar] + [
        type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32, np.bool_)
    ]
    return [Config, ModelType, InputType, EvaluatorType, FeatureSource, FeatureType, yaml.FullLoader,
            *numpy_types, *_model_classes()]


def _model_classes() -> list:
    """Every model class a Config can name (it stores ``model_class``): RecBole's and the plugin's.
    Only the class is referenced by a checkpoint, never called."""
    import importlib

    from recbole.model.abstract_recommender import AbstractRecommender

    classes = set()
    for kind in ("general_recommender", "context_aware_recommender", "sequential_recommender",
                 "knowledge_aware_recommender", "exlib_recommender"):
        try:
            pkg = importlib.import_module(f"recbole.model.{kind}")
        except ImportError:  # exlib models need lightgbm/xgboost
            continue
        classes.update(v for v in vars(pkg).values() if isinstance(v, type) and issubclass(v, AbstractRecommender))
    return sorted(classes, key=lambda c: (c.__module__, c.__name__))


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
            if _pickle_protocol(path) >= 4:
                raise UnsafeCheckpointError(
                    f"Cannot safely load {path}: it was written with pickle protocol 4 (RecBole without "
                    f"recbole_lru), which the weights-only loader cannot read. If you trust the file, "
                    f"convert it once with: python -m recbole_lru.compat --convert {path}"
                ) from None
            raise UnsafeCheckpointError(
                f"Refusing to load {path}: it contains objects that are not part of a RecBole "
                f"checkpoint, and loading it would run arbitrary code. Only load checkpoints you "
                f"trained yourself. Details: {str(err).splitlines()[0]}"
            ) from None
        except (RuntimeError, EOFError) as err:
            raise UnsafeCheckpointError(
                f"Cannot read checkpoint {path}: the file is truncated or not a torch checkpoint ({err})."
            ) from None


def _pickle_protocol(path: str) -> int:
    """Protocol of the pickle inside a torch zip checkpoint (0 if unknown)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            name = next(n for n in zf.namelist() if n.endswith("data.pkl"))
            head = zf.open(name).read(2)
    except (zipfile.BadZipFile, StopIteration, OSError):
        return 0
    return head[1] if len(head) == 2 and head[0] == 0x80 else 0


def convert_checkpoint(src, dst=None) -> str:
    """Rewrite a trusted protocol-4 RecBole checkpoint so the safe loader reads it.

    This unpickles ``src`` fully (``weights_only=False``): run it only on files you trust.
    """
    dst = os.fspath(dst or src)
    state = torch.load(os.fspath(src), map_location="cpu", weights_only=False)
    save_checkpoint(state, dst)
    load_checkpoint(dst)  # the result must pass the safe loader
    return dst


def atomic_write(path, write, binary: bool = True) -> None:
    """Call ``write(fh)`` on a temporary file beside ``path``, then rename it into place, so a
    crash mid-write never leaves a truncated file (and no temporary file stays behind)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=folder)
    try:
        umask = os.umask(0)  # mkstemp makes the file 0600: give it the permissions open() would
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb" if binary else "w") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_checkpoint(obj, path, **kwargs) -> None:
    """``torch.save`` to a temporary file in the same folder, then an atomic rename."""
    atomic_write(path, lambda fh: torch.save(obj, fh, **kwargs))


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
        # RecBole asks for pickle protocol 4, whose FRAME opcode torch's weights-only reader
        # rejects; protocol 2 (torch's default) stores the same data, tensors stay in the zip.
        kwargs.pop("pickle_protocol", None)
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


def no_anomaly_mode() -> None:
    """Undo RecBole 1.2.1's ``torch.autograd.set_detect_anomaly(True)``.

    ``recbole/model/sequential_recommender/sine.py`` switches autograd anomaly detection on for the
    whole process when the sequential models are imported (which every RecBole run does). Anomaly
    mode checks every backward output for NaN and records a stack per op: about a fifth of a
    training step of every model. Call after RecBole's model packages are imported.
    """
    import recbole.model.sequential_recommender  # noqa: F401  (the import that turns it on)

    torch.autograd.set_detect_anomaly(False)


def keep_freed_memory() -> bool:
    """Stop glibc from handing large freed buffers back to the OS after every use.

    A training step allocates and frees the (positions x items) score matrix and its gradient
    (about 100 MB each on Amazon-sized catalogues). glibc serves such blocks with mmap and unmaps
    them on free, so the next step page-faults the same memory in again: on a 2-core machine
    that was a third of the step's CPU time, spent in the kernel. Raising the mmap and trim
    thresholds keeps those pages in the process for reuse. The price is memory: freed blocks stay
    in the heap, and fragmentation raised the peak RSS of whole comparison runs (Video LRURec:
    2.1 GB before, 5.1 GB after), which is returned only when the process ends. No-op (returns
    False) off glibc or when ``RECBOLE_LRU_MALLOC=default`` (use that where memory is tight).
    """
    if os.environ.get("RECBOLE_LRU_MALLOC", "").lower() == "default":
        return False
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    limit = 2**31 - 1  # the largest value mallopt takes (an int)
    return bool(mallopt(m_mmap_threshold, limit) and mallopt(m_trim_threshold, limit)
                and mallopt(m_top_pad, 64 << 20))


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


if __name__ == "__main__":  # python -m recbole_lru.compat --convert FILE [OUT]
    import argparse

    parser = argparse.ArgumentParser(description="Convert a trusted RecBole checkpoint for safe loading.")
    parser.add_argument("--convert", required=True, metavar="FILE")
    parser.add_argument("out", nargs="?", default=None)
    ns = parser.parse_args()
    apply()
    print(convert_checkpoint(ns.convert, ns.out))
