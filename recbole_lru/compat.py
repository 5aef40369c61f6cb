"""Named shims that let RecBole 1.2.1 run on numpy 2, torch >= 2.6 and pandas 2.

``import recbole_lru`` applies them through :mod:`recbole_lru.patches`, which records each change
and undoes it in ``recbole_lru.unregister()``. Each shim only adds what is missing; none changes
how RecBole's own models compute.

* ``numpy_aliases``: RecBole's ``Config.compatibility_settings`` reads ``np.float_``,
  ``np.complex_`` and ``np.unicode_``, its metrics ``np.float``, ray 2.6 ``np.bool8``; numpy 2
  removed them (every removed name those packages read is restored, tested in a fresh process).
* ``safe_checkpoints``: torch >= 2.6 loads with ``weights_only=True`` and RecBole checkpoints
  pickle its ``Config``. Neither full unpickling (which runs arbitrary code from any file a user
  is handed) nor torch's allow-list (whose unpickler *calls* every allowed name with arguments
  from the file, and RecBole's ``Config.__init__`` evaluates strings) is safe. RecBole's trainer
  and quick-start read checkpoints through :func:`load_checkpoint`
  (:mod:`recbole_lru.checkpoint`), which never calls anything a file names: every allowed name
  is an inert stand-in, and real objects are rebuilt afterwards from checked plain values. The
  reasoning why no allow-listed name can run code is in ``recbole_lru/checkpoint/__init__.py``
  (the module docstring, item by item); the attacks are in ``tests/test_checkpoint_attacks.py``
  and ``tests/test_checkpoint_paths.py``.
* ``atomic_saves``: RecBole's trainer writes checkpoints through :func:`save_checkpoint`, a
  temporary file renamed into place, so a crash mid-save never leaves a truncated best model; the
  first save in a folder removes the temporary files of writers that were killed (SIGKILL runs no
  cleanup), see :func:`clean_stale_temp_files`.
"""
from __future__ import annotations

import os
import types

import numpy as np
import torch

from .atomic import atomic_write, clean_stale_temp_files  # re-exported: public names
from .checkpoint import CheckpointError, UnsafeCheckpointError, load_checkpoint

__all__ = [
    "load_checkpoint",
    "save_checkpoint",
    "atomic_write",
    "UnsafeCheckpointError",
    "CheckpointError",
    "convert_checkpoint",
    "clean_stale_temp_files",
    "keep_freed_memory",
    "quiet_recbole_warnings",
]

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
    "NaN": "nan",
}
# numpy 1.24 removed these aliases of Python's types. RecBole reads them at run time (np.float in
# its NDCG/MAP metrics) and sets them itself, to these values, only when a Config is constructed,
# which a process that just loads a checkpoint never does.
_RECBOLE_ALIASES = {"float": "float64", "int": "int_", "complex": "complex128", "object": "object_",
                    "str": "str_", "unicode": "str_", "bool": "bool_", "long": "int_"}


def numpy_aliases() -> None:
    """Every removed numpy name that RecBole 1.2.1, ray 2.6 or hyperopt 0.2.5 reads."""
    for alias, target in _NUMPY_ALIASES.items():
        if alias not in np.__dict__:
            setattr(np, alias, getattr(np, target))
    for alias, target in _RECBOLE_ALIASES.items():
        if alias not in np.__dict__:  # numpy 2 has np.bool and np.long again: those stay numpy's
            setattr(np, alias, getattr(np, target))


# --------------------------------------------------------------------------------------------
# Checkpoints (the loader and the reasoning why nothing in a file runs: recbole_lru/checkpoint/)
# --------------------------------------------------------------------------------------------
def convert_checkpoint(src, dst=None) -> str:
    """Rewrite a *trusted* checkpoint that :func:`load_checkpoint` cannot read (torch's legacy
    pre-1.6 format) as a current one.

    This unpickles ``src`` fully (``weights_only=False``), which runs whatever the file asks for:
    run it only on files you trust. RecBole's own protocol-4 checkpoints need no conversion.
    """
    dst = os.fspath(dst or src)
    state = torch.load(os.fspath(src), map_location="cpu", weights_only=False)
    save_checkpoint(state, dst)
    load_checkpoint(dst)  # the result must pass the safe loader
    return dst


# --------------------------------------------------------------------------------------------
# Atomic checkpoint writes (the mechanism and the clean-up of killed writers: recbole_lru/atomic.py)
# --------------------------------------------------------------------------------------------
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
        # RecBole asks for pickle protocol 4, whose FRAME opcode torch's weights-only reader rejects
        # (ours reads both); protocol 2, torch's default, keeps the files readable by torch too.
        kwargs.pop("pickle_protocol", None)
        if isinstance(f, (str, os.PathLike)):
            return save_checkpoint(obj, f, **kwargs)
        return torch.save(obj, f, **kwargs)


def safe_checkpoints() -> None:
    import recbole.quick_start.quick_start as quick_start
    import recbole.trainer.trainer as trainer

    proxy = _TorchForRecBole()
    trainer.torch = proxy
    # load_data_and_model does a local ``import torch``: patches.py replaces the function
    # (the safe one is recbole_lru.quick_start.load_data_and_model).
    quick_start.torch = proxy


def quiet_recbole_warnings() -> None:
    """Hide the FutureWarnings RecBole 1.2.1 itself triggers on every run.

    They come from RecBole's own code, not the user's: ``torch.cuda.amp.GradScaler`` (deprecated in
    torch 2.4) in its trainer, and pandas' chained-assignment notice for ``fillna(inplace=True)`` in
    its dataset, which still fills on pandas 2 (the install pins ``pandas<3``, where it would not).
    Only FutureWarnings attributed to ``recbole.*`` modules are hidden; everything else is shown.
    The entry points call this; a library import does not change warning filters.
    """
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning, module=r"recbole\.")


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


if __name__ == "__main__":  # python -m recbole_lru.compat --convert FILE [OUT]
    import argparse

    parser = argparse.ArgumentParser(description="Convert a trusted RecBole checkpoint for safe loading.")
    parser.add_argument("--convert", required=True, metavar="FILE")
    parser.add_argument("out", nargs="?", default=None)
    ns = parser.parse_args()  # running this module imported recbole_lru first, which applied the shims
    print(convert_checkpoint(ns.convert, ns.out))
