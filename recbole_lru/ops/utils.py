"""What every op shares: the dtype it computes in and how an environment variable picks its backend.

Each op reads one variable (``RECBOLE_LRU_SCAN_BACKEND``, ``RECBOLE_LRU_ATTENTION_BACKEND``), which
replaces its ``"auto"`` choice and is checked strictly. ``RECBOLE_LRU_BACKEND``, the single variable
both ops used to share, is still read when an op's own variable is unset: each op takes the values
it knows from it and leaves the other op's values alone.
"""
from __future__ import annotations

import os

import torch

__all__ = ["compute_dtype", "backend_from_env", "SHARED_ENV", "is_compiling"]

#: the variable both ops shared before each had its own; read as a fallback
SHARED_ENV = "RECBOLE_LRU_BACKEND"
# every value SHARED_ENV ever meant, for either op: one op ignores the other's values
_SHARED_VALUES = ("auto", "sequential", "parallel", "chunked", "triton", "reference", "torch")


def compute_dtype(*dtypes: torch.dtype) -> torch.dtype:
    """The dtype an op computes in for inputs of these dtypes: double precision when any input is
    double (float64/complex128), else single (float32/complex64); complex when any input is complex.
    Half precision (float16, bfloat16, complex32) is upcast."""
    complex_ = any(d.is_complex for d in dtypes)
    double = any(d in (torch.float64, torch.complex128) for d in dtypes)
    if complex_:
        return torch.complex128 if double else torch.complex64
    return torch.float64 if double else torch.float32


def backend_from_env(variable: str, valid: tuple) -> str | None:
    """The backend the environment asks for, or None (then the op chooses).

    ``variable`` (the op's own) must hold one of ``valid``; otherwise ``SHARED_ENV`` is read,
    where values of the other op are skipped and unknown values raise.
    """
    value = os.environ.get(variable, "").strip().lower()
    if value:
        if value not in valid:
            raise ValueError(f"{variable}={value!r} is not a valid backend; expected one of {list(valid)}")
        return None if value == "auto" else value
    shared = os.environ.get(SHARED_ENV, "").strip().lower()
    if not shared or shared == "auto":
        return None
    if shared in valid:
        return shared
    if shared in _SHARED_VALUES:
        return None  # a value for the other op
    raise ValueError(f"{SHARED_ENV}={shared!r} is not a valid backend of any op; expected one of "
                     f"{list(_SHARED_VALUES)} (or set {variable})")


def is_compiling() -> bool:
    """True while torch.compile traces the code (a constant for the traced graph)."""
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and compiler.is_compiling())
