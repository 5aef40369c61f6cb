"""Running one entry: in a fresh Python process (the default), or in this one.

A process per model means a crash or an out-of-memory kill costs one row and peak memory is that
model's alone. The process works in the entry's work folder (checkpoints, RecBole's ``log/`` and
``log_tensorboard/``, ``progress.json``); its stdout and stderr go to ``logs/<entry>.log`` in the
results folder. The work folder is removed once the model has finished and kept when it has not,
so that the same command continues it (see :mod:`.worker`).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shlex
import shutil
import subprocess
import sys

from ..provenance import atomic_write_json
from .entries import ModelEntry

__all__ = ["run_worker", "worker_command", "entry_work_dir"]


def entry_work_dir(work_root: str, entry: ModelEntry) -> str:
    from .entries import safe_name

    return os.path.join(work_root, safe_name(entry.name))


def worker_command(spec_path: str) -> list[str]:
    return [sys.executable, "-m", "recbole_lru.compare", "--_worker", spec_path]


def _log_tail(path: str, n: int = 6) -> str:
    try:
        with open(path, errors="replace") as fh:
            lines = [ln.rstrip() for ln in fh.readlines()[-200:] if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])


def _package_parent() -> str:
    # where this process imports recbole_lru from, so the worker imports the same code even when
    # it runs from a checkout that is not installed (the worker's cwd is its work folder)
    import recbole_lru

    return os.path.dirname(os.path.dirname(os.path.abspath(recbole_lru.__file__)))


@contextlib.contextmanager
def _inside(folder: str):
    previous, argv = os.getcwd(), sys.argv
    os.chdir(folder)
    sys.argv = argv[:1]  # RecBole's Config also reads --key=value from the command line
    try:
        yield
    finally:
        os.chdir(previous)
        sys.argv = argv


def run_worker(entry: ModelEntry, dataset: str, config: dict, data_dir: str | None, log_path: str, work: str,
               timeout: float | None = None, threads: int | None = None, time_budget: float | None = None,
               in_process: bool = False) -> dict:
    """Train and test one entry with its work folder ``work``; returns its result dict."""
    os.makedirs(work, exist_ok=True)
    spec = {
        "name": entry.name,
        "model": entry.model,
        "dataset": dataset,
        "config": dict(config, checkpoint_dir=os.path.join(work, "saved")),
        "data_dir": data_dir,
        "work": work,
        "result_path": os.path.join(work, "result.json"),
        "threads": threads,
        "time_budget": time_budget,
    }
    if os.path.isfile(spec["result_path"]):
        os.remove(spec["result_path"])  # an earlier attempt's result must not pass for this one's
    spec_path = os.path.join(work, "spec.json")
    atomic_write_json(spec_path, spec)
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    continuing = os.path.isfile(os.path.join(work, "progress.json"))
    stamp = _dt.datetime.now().isoformat(timespec="seconds")
    error, rc = None, 0
    if in_process:
        if timeout:
            raise ValueError("a timeout needs a process per model; drop --timeout or --in_process")
        from .worker import run_spec

        with open(log_path, "a" if continuing else "w") as log:
            log.write(f"# {stamp} {entry.name}: in the harness's process\n")
        with _inside(work):
            rc = run_spec(spec)
    else:
        command = worker_command(spec_path)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join([_package_parent()] + [p for p in [env.get("PYTHONPATH")] if p])
        with open(log_path, "a" if continuing else "w") as log:
            log.write(f"# {stamp} {entry.name}: {' '.join(shlex.quote(c) for c in command)}\n")
            log.flush()
            proc = subprocess.Popen(command, cwd=work, stdout=log, stderr=subprocess.STDOUT, env=env)
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                rc = None
                error = f"timed out after {timeout:g} s"
            except BaseException:
                # Ctrl-C reaches the worker too (same process group); give it a moment to leave
                # its checkpoints consistent, then make sure it is gone
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                raise
    result = {}
    if os.path.isfile(spec["result_path"]):
        with open(spec["result_path"]) as fh:
            result = json.load(fh)
    if error is None and rc != 0 and not result.get("error"):
        if rc is not None and rc < 0:
            error = f"worker killed by signal {-rc} (out of memory?)"
        else:
            error = f"worker exited with status {rc}"
        tail = _log_tail(log_path)
        if tail:
            error += f": {tail}"
    if error:
        result["error"] = error
    # finished: checkpoints and progress are not needed, unless the time budget stopped the fit
    # (a later run with more time continues it)
    if not result.get("error") and result.get("stopped_by") != "time_budget":
        shutil.rmtree(work, ignore_errors=True)
    return result
