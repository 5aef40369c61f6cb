"""recbole_lru.patches: every change to RecBole is recorded with a reason and undone exactly."""
import sys
import types
import warnings

import numpy as np
import pytest
import torch

import recbole_lru
from recbole_lru import patches


def _is_ours(value) -> bool:
    if isinstance(value, types.ModuleType):
        return value.__name__.startswith("recbole_lru")
    module = getattr(value, "__module__", None)
    return isinstance(module, str) and module.startswith("recbole_lru")


def _snapshot():
    """Every entry of every loaded RecBole module and of the classes they define, numpy's names,
    sys.modules' RecBole entries and torch's anomaly flag."""
    state = {"anomaly": torch.is_anomaly_enabled(), "numpy": dict(vars(np))}
    for name, module in list(sys.modules.items()):
        if name != "recbole" and not name.startswith("recbole."):
            continue
        state[("sys.modules", name)] = module
        if module is None or _is_ours(module):
            continue
        for key, value in list(vars(module).items()):
            state[(name, key)] = value
            if isinstance(value, type) and value.__module__ == name:
                for attr, member in vars(value).items():
                    state[(name, key, attr)] = member
    return state


def _differences(a, b):
    keys = set(a) | set(b)
    out = [k for k in keys if k not in ("numpy",) and a.get(k, KeyError) is not b.get(k, KeyError)]
    numpy_a, numpy_b = a["numpy"], b["numpy"]
    out += [("numpy", k) for k in set(numpy_a) | set(numpy_b) if numpy_a.get(k, KeyError) is not numpy_b.get(k, KeyError)]
    return sorted(map(str, out))


def test_unregister_restores_recbole_exactly():
    try:
        recbole_lru.unregister()
        before = _snapshot()
        ours = [k for k, v in before.items() if k != "numpy" and _is_ours(v)]
        assert ours == [], ours
        assert "recbole.model.sequential_recommender.lrurec" not in sys.modules
        assert "float_" not in vars(np)
        import recbole.trainer.trainer as trainer
        import recbole.utils.utils as utils_utils

        assert trainer.torch is torch and utils_utils.get_model.__module__ == "recbole.utils.utils"

        recbole_lru.register()
        assert _differences(before, _snapshot()), "register() changed nothing"
        recbole_lru.unregister()
        assert _differences(before, _snapshot()) == []
    finally:
        recbole_lru.register()
    from recbole.utils import get_model

    assert get_model("LRURec") is recbole_lru.LRURec


def test_every_patch_says_why_and_register_is_idempotent():
    records = patches.applied()
    assert records and all(len(p.why) > 20 for p in records)
    targets = [p.target for p in records]
    assert len(targets) == len(set(targets))
    recbole_lru.register()
    assert patches.applied() == records and recbole_lru.registry.is_registered()
    assert "recbole.trainer.trainer.Trainer._full_sort_batch_eval" in targets
    assert "recbole.config.configurator.Config._load_internal_config_dict" in targets


def test_patch_helper_records_missing_and_present_attributes():
    holder = types.SimpleNamespace(kept=1)
    flag_state = {"on": True}
    flag = patches.GlobalFlag("a flag", lambda: flag_state["on"], lambda v: flag_state.update(on=v))
    n = len(patches.applied())
    try:
        kept = patches.patch(holder, "kept", 2, why="replaces an attribute that exists")
        patches.patch(holder, "added", 3, why="adds an attribute that did not exist")
        patches.patch(flag, "enabled", False, why="flips a process-wide flag")
        assert (holder.kept, holder.added, flag_state["on"]) == (2, 3, False)
        assert patches.original(holder, "kept") == 1
        with pytest.raises(RuntimeError, match="patched already"):
            patches.patch(holder, "kept", 4, why="twice")
        patches.undo(kept)  # one patch alone, out of order
        assert holder.kept == 1 and patches.original(holder, "added") is patches._MISSING
    finally:
        patches._undo_after(n)  # only the three records added here
    assert holder.kept == 1 and not hasattr(holder, "added") and flag_state["on"] is True


def test_untested_recbole_version_warns_once(monkeypatch):
    import recbole

    monkeypatch.setattr(recbole, "__version__", "9.9.9")
    monkeypatch.setattr(patches, "_WARNED", [])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert patches.check_recbole_version() is False
        assert patches.check_recbole_version() is False
    found = [w for w in caught if issubclass(w.category, patches.RecBoleVersionWarning)]
    assert len(found) == 1 and "9.9.9" in str(found[0].message) and "1.2.1" in str(found[0].message)
    monkeypatch.setattr(recbole, "__version__", "1.2.1")
    assert patches.check_recbole_version() is True


def test_anomaly_mode_stays_off():
    assert not torch.is_anomaly_enabled()


def test_ensure_dir_survives_another_process_creating_the_folder(tmp_path, monkeypatch):
    # the race, made deterministic: the folder appears between RecBole's exists() check and its
    # makedirs (another rank got there first); RecBole's own ensure_dir fails, every patched binding not
    import importlib
    import os

    from recbole_lru import distributed

    folder = tmp_path / "saved"
    folder.mkdir()
    monkeypatch.setattr(os.path, "exists", lambda path: False)
    with pytest.raises(FileExistsError):
        distributed._ORIGINALS["ensure_dir:recbole.utils.utils"](str(folder))
    for owner in distributed._ENSURE_DIR_OWNERS:
        importlib.import_module(owner).ensure_dir(str(folder))
    importlib.import_module("recbole.trainer.trainer").ensure_dir(str(tmp_path / "new" / "deep"))
    assert (tmp_path / "new" / "deep").is_dir()
