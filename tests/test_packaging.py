"""What a regular (non-editable) install gets: every package folder and every YAML file."""
import configparser
import os
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO

PACKAGE = os.path.join(REPO, "recbole_lru")
PROPERTIES = os.path.join(REPO, "properties")


def _package_dirs():
    for root, dirs, files in os.walk(PACKAGE):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        if any(f.endswith(".py") for f in files):
            yield root


def _property_files():
    return sorted(os.path.relpath(os.path.join(r, f), REPO) for r, _, fs in os.walk(PROPERTIES) for f in fs)


def test_every_package_folder_has_an_init():
    """setup.cfg's ``packages = find:`` leaves out a folder without __init__.py (and the wheel with it)."""
    missing = [os.path.relpath(d, REPO) for d in _package_dirs() if not os.path.isfile(os.path.join(d, "__init__.py"))]
    assert missing == []


def test_every_yaml_file_is_installed():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(REPO, "setup.cfg"))
    listed = [f.strip() for value in cfg["options.data_files"].values() for f in value.split(",") if f.strip()]
    assert sorted(listed) == _property_files()


@pytest.mark.slow
def test_wheel_holds_the_package_and_its_yaml(tmp_path):
    """Build the wheel offline with .ci/build_wheel.py (as .ci/run does) and read its file list."""
    proc = subprocess.run([sys.executable, os.path.join(REPO, ".ci", "build_wheel.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = proc.stdout.strip().splitlines()[-1]
    names = set(zipfile.ZipFile(wheel).namelist())
    for d in _package_dirs():
        rel = os.path.relpath(d, REPO).replace(os.sep, "/")
        assert f"{rel}/__init__.py" in names, rel
    data = {n.split("/data/share/recbole-lru/", 1)[1] for n in names if "/data/share/recbole-lru/" in n}
    assert sorted(data) == _property_files()


def test_installed_yaml_is_found_from_the_distribution_files(tmp_path, monkeypatch):
    """A regular install: the YAML lies in <prefix>/share/recbole-lru/properties, which the
    installed distribution's file list points to (relative to site-packages)."""
    import importlib.metadata
    import pathlib

    from recbole_lru import catalog

    site = tmp_path / "lib" / "site-packages"
    share = tmp_path / "share" / "recbole-lru" / "properties" / "model"
    share.mkdir(parents=True)
    site.mkdir(parents=True)
    (share / "LRURec.yaml").write_text("r_min: 0.8\n")

    class File(pathlib.PurePosixPath):
        def locate(self):
            return site / self

    class Dist:
        files = [File("recbole_lru/__init__.py"), File("../../share/recbole-lru/properties/model/LRURec.yaml")]

    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: Dist())
    assert catalog._installed_properties() == [(tmp_path / "share" / "recbole-lru" / "properties").resolve()]
