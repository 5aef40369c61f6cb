"""summary.md and the plots, regenerated from summary.json alone (old rows included)."""
import json

from compare_helpers import fake_result
from recbole_lru.compare import METRIC_KEYS, report


PROTOCOL = {"epochs": 5, "MAX_ITEM_LIST_LENGTH": 10, "valid_metric": "Recall@10"}


def _summary():
    new = dict(fake_result(), model="LRURec", regime="whole_sequence", protocol=PROTOCOL,
               optimization={"optimizer": "adamw", "learning_rate": 0.001, "weight_decay": 0.01, "decay": "decoupled",
                             "decay_params": "weights and embeddings (no biases, LayerNorm or LRU log parameters)",
                             "clip_grad_norm": {"max_norm": 5.0}},
               resumed_at_epochs=[3])
    # a row written before rows recorded their optimisation: read from its final config
    old = dict(fake_result(), model="SASRecWS", protocol=PROTOCOL, stopped_by="time_budget", epochs_run=4,
               config={"learner": "adam", "learning_rate": 0.001, "weight_decay": 0.01, "clip_grad_norm": None})
    broken = {"model": "GRU4Rec", "error": "worker killed | by signal 9", "test": {}, "protocol": {"epochs": 9}}
    return {"dataset": "tiny", "protocol": PROTOCOL,
            "models": {"LRURec": new, "SASRecWS": old, "GRU4Rec": broken}, "runs": []}


def test_table_shows_each_rows_optimisation_and_flags_differences():
    md = report.render_markdown(_summary())
    lines = {ln.split(" | ")[0]: ln for ln in md.splitlines() if ln.startswith("| ")}
    assert "| adamw | 0.001 | 0.01 decoupled, weights only | 5 | 1 (resumed after epoch 3) |" in lines["| LRURec"]
    assert "| adam | 0.001 | 0.01 L2 | – | 1 of 4, time budget |" in lines["| SASRecWS"]
    assert "worker killed \\| by signal 9" in lines["| GRU4Rec*"]  # * : another protocol
    assert "not optimised alike" in md and "LRURec; SASRecWS" in md
    same = _summary()
    same["models"]["SASRecWS"]["config"]["learner"] = "adamw"
    same["models"]["SASRecWS"]["optimization"] = same["models"]["LRURec"]["optimization"]
    assert "not optimised alike" not in report.render_markdown(same)


def test_report_command_rewrites_table_and_plots(tmp_path, capsys):
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps(_summary()))
    assert report.main([str(folder / "summary.json")]) == 0
    assert "| Model | Regime | " + " | ".join(k.replace("recall", "Recall").replace("ndcg", "NDCG").replace(
        "mrr", "MRR") for k in METRIC_KEYS) in (folder / "summary.md").read_text()
    for png in ("valid_ndcg_vs_time.png", "test_metrics.png"):
        assert (folder / png).read_bytes()[:4] == b"\x89PNG"
    (folder / "other.json").write_text("{}")
    assert report.main([str(folder / "other.json")]) == 2
    assert "not a harness summary" in capsys.readouterr().err
