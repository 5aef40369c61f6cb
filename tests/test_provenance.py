"""The shared provenance helpers: JSON conversion, atomic writes, git and machine records."""
import enum
import json
import math
import os
import subprocess

import numpy as np
import pytest
import torch

from recbole_lru.provenance import atomic_write_json, git_info, json_safe, machine_info, portable_paths, portable_text


class Color(enum.IntEnum):
    RED = 1


def test_json_safe_converts_what_recbole_results_hold():
    obj = {1: np.float32(0.5), "t": torch.tensor(3), "nan": float("nan"), "inf": math.inf,
           "enum": Color.RED, "tup": (1, {2}), "arr": np.arange(2), "none": None}
    out = json_safe(obj)
    assert out == {"1": 0.5, "t": 3, "nan": None, "inf": None, "enum": "RED", "tup": [1, [2]],
                   "arr": str(np.arange(2)), "none": None}
    json.dumps(out, allow_nan=False)


def test_atomic_write_json_replaces_whole_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "x.json"
    atomic_write_json(path, {"a": 1})
    atomic_write_json(path, {"b": float("nan")})
    assert json.loads(path.read_text()) == {"b": None}
    assert os.listdir(path.parent) == ["x.json"]


def test_atomic_write_json_keeps_old_file_when_conversion_fails(tmp_path):
    path = tmp_path / "x.json"
    atomic_write_json(path, {"a": 1})

    class Bad:
        def __str__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_write_json(path, {"b": Bad()})
    assert json.loads(path.read_text()) == {"a": 1}


def test_git_info_in_and_outside_a_checkout(tmp_path):
    assert git_info(tmp_path) == {"git_commit": None, "git_dirty": None}
    repo = tmp_path / "repo"
    repo.mkdir()
    run = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    (repo / "f.txt").write_text("1")
    run("add", "f.txt")
    run("-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "x")
    clean = git_info(repo / "f.txt")
    assert len(clean["git_commit"]) == 40 and clean["git_dirty"] is False
    (repo / "f.txt").write_text("2")
    assert git_info(repo)["git_dirty"] is True


def test_machine_info_has_no_paths():
    info = machine_info()
    assert info["cpu_count"] == os.cpu_count() and info["torch"] == torch.__version__
    assert not any(isinstance(v, str) and os.sep + "work" in v for v in info.values())


def test_portable_paths_name_no_machine_folder():
    obj = {"data": "/srv/x/shared/datasets/ml-100k", "work": "/home/u/.cache/runs/a", "here": "/srv/x/main/saved/m.pth",
           "rel": "saved/m.pth", "url": "redis://h:1/0", "text": "/a\n/b", "n": [1, "/srv/x/main"]}
    out = portable_paths(obj, cwd="/srv/x/main", home="/home/u")
    assert out == {"data": "../shared/datasets/ml-100k", "work": "~/.cache/runs/a", "here": "saved/m.pth",
                   "rel": "saved/m.pth", "url": "redis://h:1/0", "text": "/a\n/b", "n": [1, "."]}
    # a checkout inside the home folder: its own files stay relative to it
    assert portable_paths("/home/u/repo/saved", cwd="/home/u/repo", home="/home/u") == "saved"


def test_portable_text_rewrites_paths_inside_a_log_and_nothing_else():
    log = ("# run: /home/u/.venv/bin/python --_worker /home/u/.cache/r/spec.json\n"
           "data_path = /srv/x/shared/datasets/v\ncheckpoint_dir = /srv/x/main/saved\n"
           "3.2it/s, http://h/x, redis://127.0.0.1:6379/0, ~/kept, (/tmp/y)\n")
    assert portable_text(log, cwd="/srv/x/main", home="/home/u") == (
        "# run: ~/.venv/bin/python --_worker ~/.cache/r/spec.json\n"
        "data_path = ../shared/datasets/v\ncheckpoint_dir = saved\n"
        "3.2it/s, http://h/x, redis://127.0.0.1:6379/0, ~/kept, (../../../tmp/y)\n")
