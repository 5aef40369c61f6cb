"""The Video paper-comparison table: ratios and the 3% rule."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import paper_table  # noqa: E402


def _row(model, **test):
    return {"model": model, "error": None, "test": test, "config": {"hidden_dropout_prob": 0.6, "weight_decay": 0.01},
            "epochs_to_best": 3, "epochs_run": 5, "stopped_by": "early_stopping"}


def test_ratios_and_three_percent_rule(tmp_path):
    paper = paper_table.PAPER["LRURec"]
    summary = {"dataset": "amazon-video-games", "models": {
        "LRURec": _row("LRURec", **{m: v * 0.971 for m, v in paper.items()}),
        "LRURec@dropout0.2": _row("LRURec", **dict({m: v * 1.1 for m, v in paper.items()}, **{"ndcg@20": 0.0})),
        "SASRecWS": _row("SASRecWS", **{"recall@10": 0.1091, "ndcg@10": 0.05829 * 0.5}),
        "Broken": {"model": "GRU4Rec", "error": "boom", "test": {}},
    }}
    rows = paper_table.compare_rows(summary)
    assert set(rows) == {"LRURec", "LRURec@dropout0.2", "SASRecWS"}
    assert rows["LRURec"]["all_within_3pct"]
    assert abs(rows["LRURec"]["metrics"]["recall@10"]["ratio"] - 0.971) < 1e-9
    assert not rows["LRURec@dropout0.2"]["all_within_3pct"]
    assert not rows["LRURec@dropout0.2"]["metrics"]["ndcg@20"]["within_3pct"]
    assert rows["SASRecWS"]["paper_row"] == "SASRec"
    assert set(rows["SASRecWS"]["metrics"]) == {"recall@10", "ndcg@10"}
    assert rows["SASRecWS"]["metrics"]["recall@10"]["within_3pct"]
    assert not rows["SASRecWS"]["metrics"]["ndcg@10"]["within_3pct"]
    text = paper_table.render(summary, rows)
    assert "| LRURec | LRURec | 0.6 | 0.01 |" in text and "✗" in text
