"""What the plugin offers RecBole, looked up without changing anything: its model names, its YAML
files and the names RecBole can build. :mod:`recbole_lru.patches` reads these; nothing here patches.
"""
from __future__ import annotations

import difflib
import functools
import importlib
import importlib.metadata
import pkgutil
import sys
import sysconfig
from pathlib import Path

__all__ = [
    "MODELS",
    "TESTED_RECBOLE",
    "ModelNotFoundError",
    "DatasetNotFoundError",
    "properties_dirs",
    "find_yaml",
    "available_models",
    "recbole_model_files",
    "unknown_model_message",
]

# name -> module that defines the class (one SequentialRecommender per file)
MODELS = {
    "LRURec": "recbole_lru.models.lrurec",
    "LinRec": "recbole_lru.models.linrec",
    "SASRecWS": "recbole_lru.models.sasrec_ws",
}

# RecBole versions the patches were written against and tested with (recbole_lru.patches)
TESTED_RECBOLE = ("1.2.1",)

_DIST = "recbole-lru"
_SHARE = ("share", "recbole-lru", "properties")
_RECBOLE_KINDS = (
    "general_recommender",
    "context_aware_recommender",
    "sequential_recommender",
    "knowledge_aware_recommender",
    "exlib_recommender",
)


class ModelNotFoundError(ValueError):
    """An unknown model name."""


class DatasetNotFoundError(FileNotFoundError):
    """A dataset that is not on disk and cannot be downloaded."""


# --------------------------------------------------------------------------------------------
# YAML files
# --------------------------------------------------------------------------------------------
def _is_properties(folder: Path) -> bool:
    # a bare "properties" folder could belong to anything beside us: look for one of our files
    return (folder / "model" / "LRURec.yaml").is_file()


def _installed_properties() -> list[Path]:
    """Where a wheel put ``share/recbole-lru/properties`` (setup.cfg ``data_files``): read from the
    installed distribution's file list, so venvs, ``--user`` and ``--prefix`` installs all work."""
    try:
        files = importlib.metadata.distribution(_DIST).files or []
    except importlib.metadata.PackageNotFoundError:
        return []
    roots = []
    for f in files:
        parts = Path(str(f)).parts
        for i in range(len(parts) - len(_SHARE) + 1):
            if parts[i:i + len(_SHARE)] == _SHARE:
                roots.append(Path(f.locate()).resolve().parents[len(parts) - i - len(_SHARE) - 1])
                break
    return roots


@functools.lru_cache(maxsize=1)
def properties_dirs() -> tuple[Path, ...]:
    """Folders holding this plugin's ``model/``, ``dataset/`` and ``hyper/`` YAML, first match wins.

    A source checkout or editable install reads the top-level ``properties/`` beside the package;
    a regular install reads the copy the wheel installed under ``<prefix>/share/recbole-lru/``.
    """
    here = Path(__file__).resolve().parent
    candidates = [
        here.parent / "properties",
        *_installed_properties(),
        Path(sysconfig.get_path("data")).joinpath(*_SHARE),
        Path(sys.prefix).joinpath(*_SHARE),
    ]
    out = []
    for c in candidates:
        if _is_properties(c) and c not in out:
            out.append(c)
    return tuple(out)


def find_yaml(kind: str, name: str) -> Path | None:
    """This plugin's ``properties/<kind>/<name>.yaml`` (kind: model, dataset), or None."""
    for root in properties_dirs():
        f = root / kind / f"{name}.yaml"
        if f.is_file():
            return f
    return None


# --------------------------------------------------------------------------------------------
# Model names
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def recbole_model_files() -> dict:
    """RecBole's own model modules by lower-case name -> kind, found without importing them."""
    root = Path(importlib.import_module("recbole.model").__file__).parent
    found = {}
    for kind in _RECBOLE_KINDS:
        for info in pkgutil.iter_modules([str(root / kind)]):
            found.setdefault(info.name, kind)
    return found


def available_models() -> list[str]:
    """Model names RecBole can build after ``import recbole_lru`` (classes, not files)."""
    names = set(MODELS)
    for kind in _RECBOLE_KINDS[:-1]:  # exlib models need lightgbm/xgboost
        pkg = importlib.import_module(f"recbole.model.{kind}")
        for attr, obj in vars(pkg).items():
            if isinstance(obj, type) and attr.lower() in recbole_model_files():
                names.add(attr)
    return sorted(names, key=str.lower)


def unknown_model_message(name: str) -> str:
    """The error text for a model name nobody defines: the closest names first, then every name."""
    names = available_models()
    by_lower = {n.lower(): n for n in names}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.8)
    hint = f" Did you mean {' or '.join(by_lower[c] for c in close)}?" if close else ""
    return (f"Unknown model '{name}'.{hint} Names are case-sensitive. Available models: "
            + ", ".join(names))
