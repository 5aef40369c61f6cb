"""Bundles: exported from real RecBole checkpoints, loaded with neither pickle nor the training data,
refused for models without an O(1) step, and checked against tampering."""
import json
import os
import pickle
import shutil

import pytest
import torch
from safetensors.torch import load_file

from serving_fixtures import bundle_dir, trained

from recbole_lru.serving import BundleError, export_bundle, load_bundle


@pytest.mark.parametrize("model", ["LRURec", "LinRec"])
def test_bundle_loads_without_pickle_and_predicts_as_trained(model, monkeypatch):
    t = trained(model)

    def refuse(*args, **kwargs):
        raise AssertionError("loading a bundle must not unpickle anything")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    bundle = load_bundle(bundle_dir(model))
    assert bundle.model_name == model and bundle.tokens == list(t.dataset.field2id_token["item_id"])
    assert bundle.popularity[0] == 0 and sum(bundle.popularity) == len(t.dataset.inter_feat)
    batch = next(iter(t.test_data))[0]
    t.net.eval()
    with torch.no_grad():
        assert torch.equal(bundle.model.full_sort_predict(batch), t.net.full_sort_predict(batch))


def test_export_rebuilds_the_catalogue_from_the_checkpoint_config(tmp_path):
    t = trained("LRURec")
    out = export_bundle(t.model_file, tmp_path / "b")  # no dataset given: RecBole rebuilds it
    with open(os.path.join(out, "items.json")) as fh:
        assert json.load(fh) == load_bundle(bundle_dir("LRURec")).tokens
    a, b = load_file(os.path.join(out, "weights.safetensors")), load_file(os.path.join(bundle_dir("LRURec"), "weights.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_export_command_line(tmp_path, capsys):
    # python -m recbole_lru.export runs exactly this main(); the service test starts real processes
    from recbole_lru.export import main

    assert main(["--model_file", trained("LRURec").model_file, "--out", str(tmp_path / "cli")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "cli")
    assert load_bundle(tmp_path / "cli").tokens == load_bundle(bundle_dir("LRURec")).tokens


def test_export_command_line_error(tmp_path, capsys):
    from recbole_lru.export import main

    assert main(["--model_file", trained("SASRec").model_file, "--out", str(tmp_path / "sas")]) == 2
    assert "error: SASRec cannot be served" in capsys.readouterr().err
    assert not (tmp_path / "sas").exists()


@pytest.mark.parametrize("key, message", [("SASRec", "SASRec cannot be served: streaming serving needs"),
                                          ("LinRec-noncausal", "LinRec cannot be served with causal: False")])
def test_export_refuses_models_without_step(key, message, tmp_path):
    with pytest.raises(BundleError, match=message):
        export_bundle(trained(key).model_file, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_damaged_bundles_are_refused(tmp_path):
    src = bundle_dir("LRURec")

    def copy(name):
        dst = tmp_path / name
        shutil.copytree(src, dst)
        return dst

    missing = copy("missing")
    os.remove(missing / "items.json")
    with pytest.raises(BundleError, match="missing items.json"):
        load_bundle(missing)
    tampered = copy("tampered")
    data = bytearray((tampered / "weights.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (tampered / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum"):
        load_bundle(tampered)
    short = copy("short")
    (short / "items.json").write_text(json.dumps(load_bundle(src).tokens[:-1]))
    with pytest.raises(BundleError, match="n_items"):
        load_bundle(short)
    with pytest.raises(FileNotFoundError):
        export_bundle(tmp_path / "nope.pth", tmp_path / "x")


def test_export_reads_moved_training_data_from_data_path(tmp_path):
    t = trained("LRURec")
    moved = tmp_path / "moved"
    shutil.copytree(os.path.join(t.folder, "data"), moved)
    out = export_bundle(t.model_file, tmp_path / "b", data_path=str(moved))
    assert load_bundle(out).tokens == load_bundle(bundle_dir("LRURec")).tokens
    with pytest.raises(FileNotFoundError, match="no file .*empty/tiny/tiny.inter"):  # names where it looked
        export_bundle(t.model_file, tmp_path / "c", data_path=str(tmp_path / "empty"))
    assert not (tmp_path / "c").exists()
