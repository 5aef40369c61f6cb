"""Where a result came from: the machine, the code's git state, and JSON written safely.

The one home of these helpers for the package, the benchmarks and the tests. Nothing here imports
torch or RecBole at module level, so a benchmark or a report can import it cheaply; the machine
record reads their versions only when they are installed.
"""
from __future__ import annotations

import enum
import json
import math
import os
import platform
import re
import subprocess

from .atomic import atomic_write

__all__ = ["machine_info", "git_info", "json_safe", "portable_paths", "portable_text", "atomic_write_json", "atomic_write_text"]


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _memory_total_gb() -> float | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 2)
    except (OSError, ValueError, IndexError):
        pass
    return None


def machine_info() -> dict:
    """The machine and software a measurement ran on (no paths, so records stay portable)."""
    info = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_total_gb": _memory_total_gb(),
        "python": platform.python_version(),
        "hostname": platform.node(),
    }
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        info["load_average"] = None
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:  # pragma: no cover
        info["torch"] = None
    try:
        import recbole

        info["recbole"] = recbole.__version__
    except ImportError:  # pragma: no cover
        info["recbole"] = None
    return info


def git_info(path) -> dict:
    """``{"git_commit": sha or None, "git_dirty": bool or None}`` for the checkout holding ``path``.

    ``path`` is explicit (a file or folder inside the checkout) because an installed package does
    not live in a checkout: outside one, or without git, both values are None. Dirty means tracked
    files differ from the commit; untracked files do not count.
    """
    folder = os.fspath(path)
    if not os.path.isdir(folder):
        folder = os.path.dirname(os.path.abspath(folder)) or "."

    def git(*args):
        try:
            out = subprocess.run(["git", "-C", folder, *args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"git_commit": commit, "git_dirty": bool(status) if status is not None else None}


def json_safe(obj):
    """A JSON-serialisable copy: enums by name, numpy/torch scalars as numbers, non-finite floats
    as None (JSON has no NaN), tuples and sets as lists, anything else unknown as its string."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, enum.Enum):  # before int: IntEnum members are ints
        return obj.name
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in obj]
    item = getattr(obj, "item", None)
    if callable(item) and getattr(obj, "ndim", 1) == 0:
        try:
            return json_safe(item())
        except (TypeError, ValueError, RuntimeError):
            pass
    return str(obj)


def portable_paths(obj, cwd: str | None = None, home: str | None = None):
    """A copy of ``obj`` whose absolute paths name no machine: a path under the home folder as
    ``~/...``, any other absolute path relative to ``cwd`` (``../shared/datasets``). Result files
    are committed and read on other machines, where this one's folders mean nothing."""
    cwd = os.path.abspath(cwd or os.getcwd())
    home = os.path.abspath(home or os.path.expanduser("~"))
    if isinstance(obj, dict):
        return {k: portable_paths(v, cwd, home) for k, v in obj.items()}
    if isinstance(obj, list):
        return [portable_paths(v, cwd, home) for v in obj]
    if not isinstance(obj, str) or not os.path.isabs(obj) or "\n" in obj:
        return obj
    path = os.path.normpath(obj)
    inside = lambda folder: path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)  # noqa: E731
    if not inside(cwd) and home != os.sep and inside(home):
        return "~" + path[len(home):]
    return os.path.relpath(path, cwd)


_ABSOLUTE_PATH = re.compile(r"(?<![\w.~/:])(/[^\s'\",;:()\[\]{}]+)")


def portable_text(text: str, cwd: str | None = None, home: str | None = None) -> str:
    """``text`` with every absolute path in it written as :func:`portable_paths` writes one (for
    logs that are committed beside a result: RecBole prints its data and checkpoint folders)."""
    return _ABSOLUTE_PATH.sub(lambda m: portable_paths(m.group(1), cwd, home), text)


def atomic_write_text(path, text: str) -> None:
    """Write ``text`` (UTF-8) atomically to ``path`` (see :func:`recbole_lru.atomic.atomic_write`)."""
    atomic_write(path, lambda fh: fh.write(text), binary=False)


def atomic_write_json(path, obj) -> None:
    """``obj`` through :func:`json_safe`, indented, written atomically to ``path``."""
    atomic_write_text(path, json.dumps(json_safe(obj), indent=2) + "\n")
