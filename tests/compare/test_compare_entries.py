"""Model entries: regimes, labelled rows, per-entry overrides."""
import pytest

from recbole_lru.compare import apply_model_configs, parse_models, safe_name


def test_model_entries_and_regimes():
    entries = parse_models("LRURec:prefix,LRURec:whole_sequence,SASRec:whole_sequence,LinRec:whole_sequence,"
                           "BPR:whole_sequence,SASRec,LRURec:prefix")
    by = {e.name: e for e in entries}
    assert list(by) == ["LRURec:prefix", "LRURec:whole_sequence", "SASRec:whole_sequence",
                        "LinRec:whole_sequence", "BPR:whole_sequence", "SASRec"]
    assert by["LRURec:prefix"].overrides == {"train_mode": "prefix"}
    assert by["SASRec:whole_sequence"].model == "SASRecWS"
    assert by["LinRec:whole_sequence"].overrides == {"train_mode": "whole_sequence", "causal": True,
                                                     "train_batch_size": 128}
    assert by["BPR:whole_sequence"].error and by["SASRec"].error is None
    with pytest.raises(ValueError, match="regime must be one of"):
        parse_models("LRURec:sideways")
    with pytest.raises(ValueError, match="no models"):
        parse_models(" , ")

    apply_model_configs(entries, ["LRURec:hidden_size=32", "LRURec:prefix:n_layers=1",
                                  "SASRec:hidden_dropout_prob=0.3", "SASRec:learner=adamw"])
    assert by["LRURec:prefix"].overrides == {"train_mode": "prefix", "hidden_size": 32, "n_layers": 1}
    assert by["LRURec:whole_sequence"].overrides["hidden_size"] == 32
    assert "n_layers" not in by["LRURec:whole_sequence"].overrides
    assert by["SASRec"].overrides == {"hidden_dropout_prob": 0.3, "learner": "adamw"}
    with pytest.raises(ValueError, match="not among the models"):
        apply_model_configs(entries, ["Caser:L=3"])
    with pytest.raises(ValueError, match="expected MODEL:key=value"):
        apply_model_configs(entries, ["hidden_size=3"])


def test_labelled_entries_are_rows_of_their_own():
    entries = parse_models("LRURec,LRURec@dropout0.6,SASRec:whole_sequence@long,LRURec@dropout0.6")
    by = {e.name: e for e in entries}
    assert list(by) == ["LRURec", "LRURec@dropout0.6", "SASRec:whole_sequence@long"]
    assert by["LRURec@dropout0.6"].model == "LRURec"
    assert by["SASRec:whole_sequence@long"].model == "SASRecWS"
    apply_model_configs(entries, ["LRURec@dropout0.6:hidden_dropout_prob=0.6", "LRURec:n_layers=1"])
    assert by["LRURec@dropout0.6"].overrides == {"hidden_dropout_prob": 0.6}
    assert by["LRURec"].overrides == {"n_layers": 1}  # a display name matches its own entry only
    assert safe_name("LRURec@dropout0.6") == "LRURec_dropout0.6"
    assert safe_name("SASRec:whole_sequence@long") == "SASRec_whole_sequence_long"
    with pytest.raises(ValueError, match="after '@'"):
        parse_models("LRURec@")
