"""Reading checkpoints without running anything a file names.

A torch checkpoint is a zip archive: ``<name>/data.pkl`` (a pickle) and ``<name>/data/<key>``
(raw tensor bytes). A pickle is a program: GLOBAL/STACK_GLOBAL opcodes name objects, REDUCE calls
one with arguments from the file, NEWOBJ calls ``cls.__new__``, BUILD calls ``__setstate__`` or sets
attributes, SETITEMS/APPENDS call ``__setitem__``/``append``. torch's weights-only unpickler does
all of that for every allow-listed name, so an allow-listed class whose constructor does work
(RecBole's ``Config.__init__`` evaluates strings) is a way to run code.

:func:`load_checkpoint` reads the archive with Python's zipfile and unpickles ``data.pkl`` with
:class:`_Unpickler`, whose ``find_class`` never imports a module and never returns a real object of
the file's choosing. Each name it knows maps to one of this module's *stand-ins* (table
``_GLOBALS``); every other name is refused (:class:`UnsafeCheckpointError`). Why no stand-in can
run code:

* A stand-in callable (``_Call``, in :mod:`.unpickler`) runs one of that module's functions: each
  checks that its arguments are plain values of the expected types and shapes and returns a
  *record* (``_Rec``) holding them, or a plain value (``bytes``, a ``set``) built from checked
  plain values. Real objects built during unpickling are only ``torch.device`` from a checked
  device string and tensors (and ``nn.Parameter`` around one), built with ``Tensor.set_`` on bytes
  read from the archive (torch checks the bounds). Model classes and the YAML loader become
  references that refuse to be called; RecBole's ``Config`` becomes a record (its stand-in type
  refuses arguments, so ``Config.__init__`` is never reached). Nothing the file names is called.
* Records, stand-in callables and stand-in types refuse attribute assignment (``__setattr__``,
  ``__slots__`` and a metaclass that forbids setting class attributes), so BUILD with slot state
  cannot plant an attribute on them or on a class; a record accepts BUILD state (or SETITEMS)
  only where a real checkpoint has one (Config, OrderedDict, dtype, ndarray), and only stores it.
  Tensors stay inside records during unpickling, so BUILD never reaches ``Tensor.__setstate__``.
* Persistent ids name archive entries only (``data/<key>`` with an alphanumeric key: a zip member,
  never a path). The archive is read with zipfile, never with ``torch.load``, so a TorchScript
  archive (whose loading runs TorchScript ``__setstate__`` code) or the legacy format is refused.
* After unpickling, :func:`_materialize` turns records into real objects from validated plain
  values: tensors, numpy scalars/arrays of numeric dtypes, enum members looked up by value,
  ``OrderedDict`` and a RecBole ``Config`` assembled attribute by attribute without running its
  ``__init__`` (model class resolved by name through ``get_model``, YAML loader set here). A
  reference to a class anywhere but inside a Config is refused.

What a checkpoint's values then *mean* (paths it records, the model it names) is checked by the
callers: :mod:`recbole_lru.quick_start` (``load_data_and_model``) and :mod:`recbole_lru.trainer`.
"""
from __future__ import annotations

import os
import zipfile

import torch

from .rebuild import _materialize
from .unpickler import _Damaged, _Refused, _Unpickler, _read_member

__all__ = ["load_checkpoint", "CheckpointError", "UnsafeCheckpointError", "checkpoint_config", "load_weights"]


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint: missing, damaged, another kind of file or model."""


class UnsafeCheckpointError(CheckpointError, RuntimeError):
    """A file that asks for something no RecBole checkpoint holds (a crafted or foreign pickle)."""


# --------------------------------------------------------------------------------------------
# The file
# --------------------------------------------------------------------------------------------
def _describe(path: str, head: bytes) -> str:
    if head.startswith(b"PK\x03\x04"):
        return f"{path} is truncated or damaged (a zip archive without its directory); use another checkpoint"
    if head[:1] == b"\x80" and head[2:3] == b"\x8a":
        return (f"{path} is in torch's legacy (pre-1.6) format, which this loader does not read; if you trust "
                f"it, convert it once with: python -m recbole_lru.compat --convert {path}")
    try:
        text = head.decode("utf-8")
        if all(c.isprintable() or c in "\r\n\t" for c in text):
            return f"{path} is a text file, not a torch checkpoint (a .pth file written by training)"
    except UnicodeDecodeError:
        pass
    return f"{path} is not a torch checkpoint (torch.save writes a zip archive; this file is not one)"


def _open(path: str):
    if not os.path.exists(path):
        raise FileNotFoundError(f"Checkpoint file not found: {path}")
    if os.path.isdir(path):
        raise CheckpointError(f"{path} is a folder, not a checkpoint; pass one of the .pth files in it")
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError as err:
        raise CheckpointError(f"Cannot read checkpoint {path}: {err.strerror}") from None
    if not head:
        raise CheckpointError(f"{path} is empty (0 bytes): not a checkpoint (perhaps cut off while written)")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise CheckpointError(_describe(path, head)) from None
    names = archive.namelist()
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        raise CheckpointError(f"{path} is a TorchScript archive (torch.jit.save), not a training checkpoint")
    pkls = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pkls) != 1:
        raise CheckpointError(f"{path} is a zip archive but not a torch checkpoint (no single */data.pkl)")
    return archive, pkls[0][: -len("data.pkl")]


def load_checkpoint(path, map_location=None):
    """Read a torch checkpoint of tensors, plain values and RecBole's types; nothing it names runs.

    Args:
        map_location: a device (or its name) to move tensors to; None keeps them on the CPU.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UnsafeCheckpointError: the file asks for an object outside a RecBole checkpoint.
        CheckpointError: anything else that makes it unreadable (empty, text, truncated, ...).
    """
    path = os.fspath(path)
    device = None if map_location is None or callable(map_location) or isinstance(map_location, dict) \
        else torch.device(map_location)
    archive, prefix = _open(path)
    try:
        with archive:
            data = _read_member(archive, prefix + "data.pkl")
            raw = _Unpickler(data, archive, prefix).load()
            return _materialize(raw, device, {})
    except _Refused as why:
        raise UnsafeCheckpointError(f"Refusing to load {path}: it {why}. Nothing in it was run. Load only "
                                    f"checkpoints you trained yourself or got from someone you trust.") from None
    except _Damaged as err:
        raise CheckpointError(f"{path} {err}") from None
    except Exception as err:  # a damaged pickle fails in many ways; none of them runs file code
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path} is damaged (or crafted): its data cannot be read ({detail}). Nothing in "
                              f"it was run. Use another checkpoint.") from None


# --------------------------------------------------------------------------------------------
# What a checkpoint must hold
# --------------------------------------------------------------------------------------------
def checkpoint_config(checkpoint, path):
    """The RecBole ``Config`` stored in a checkpoint, or one clear error."""
    from recbole.config.configurator import Config

    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path} holds a {type(checkpoint).__name__}, not a RecBole checkpoint (a dict "
                              f"with config and state_dict); pass a .pth file written by training")
    config = checkpoint.get("config")
    if not isinstance(config, Config):
        got = "no config" if config is None else f"its config as a {type(config).__name__}"
        raise CheckpointError(f"{path} holds {got}, not RecBole's Config: it was not written by RecBole's "
                              f"trainer; pass a .pth file written by training")
    return config


def load_weights(model, checkpoint, path) -> None:
    """``model.load_state_dict`` from a checkpoint, with one clear error for another model or shape."""
    config = checkpoint_config(checkpoint, path)
    state = checkpoint.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no model weights (state_dict): not a RecBole checkpoint")
    name = type(model).__name__
    if config["model"].lower() != name.lower():
        raise CheckpointError(f"{path} is a {config['model']} checkpoint, not a {name} one; use it with "
                              f"--model={config['model']}")
    try:
        model.load_state_dict(state)
        model.load_other_parameter(checkpoint.get("other_parameter"))
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        detail = "; ".join(lines[1:3] if len(lines) > 1 else lines) or type(err).__name__
        raise CheckpointError(
            f"{path} does not fit the model built from this config (a different dataset or "
            f"hidden_size/n_layers/...?); use the config the run was started with. Details: {detail}") from None
