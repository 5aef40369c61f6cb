"""Atomic file writes: a temporary file beside the target, renamed into place, so a crash
mid-write never leaves a truncated file; and the clean-up of temporary files whose writer was
killed. Plain standard library (no torch), so every part of the package can use it."""
from __future__ import annotations

import os
import re
import tempfile
import time

__all__ = ["atomic_write", "clean_stale_temp_files"]

_TMP_PREFIX = ".tmp-recbole-lru-"  # + "<pid>-<random>-<file name>"
_LEGACY_TMP = re.compile(r"\.tmp-[a-z0-9_]{8}.+")  # mkstemp names of earlier versions
_LEGACY_STALE_S = 3600.0  # no save takes an hour: an older legacy temporary file is a leftover
_CLEANED: set = set()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def clean_stale_temp_files(folder) -> list[str]:
    """Remove the temporary files of :func:`atomic_write` in ``folder`` whose writer is gone
    (killed mid-save: SIGKILL runs no cleanup). A file of a live process on this machine is kept.
    Returns the removed paths."""
    folder = os.fspath(folder)
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    now = time.time()
    for name in names:
        path = os.path.join(folder, name)
        if name.startswith(_TMP_PREFIX):
            pid = name[len(_TMP_PREFIX):].split("-", 1)[0]
            stale = pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid))
        elif _LEGACY_TMP.fullmatch(name):
            try:
                stale = now - os.path.getmtime(path) > _LEGACY_STALE_S
            except OSError:
                stale = False
        else:
            continue
        if stale:
            try:
                os.remove(path)
                removed.append(path)
            except OSError:
                pass
    return removed


def atomic_write(path, write, binary: bool = True) -> None:
    """Call ``write(fh)`` on a temporary file beside ``path``, then rename it into place, so a
    crash mid-write never leaves a truncated file (and no temporary file stays behind)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if folder not in _CLEANED:  # once per folder and process: the next run cleans up after a killed one
        _CLEANED.add(folder)
        clean_stale_temp_files(folder)
    fd, tmp = tempfile.mkstemp(prefix=f"{_TMP_PREFIX}{os.getpid()}-", suffix="-" + os.path.basename(path),
                               dir=folder)
    try:
        umask = os.umask(0)  # mkstemp makes the file 0600: give it the permissions open() would
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
