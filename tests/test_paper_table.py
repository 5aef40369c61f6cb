"""The Video paper-comparison table: ratios and the 3% rule."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import paper_table  # noqa: E402


def _row(model, valid=0.1, **test):
    return {"model": model, "error": None, "test": test, "config": {"hidden_dropout_prob": 0.6, "weight_decay": 0.01},
            "best_valid": {"recall@10": valid},
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
    assert "| LRURec | LRURec | 0.6 | 0.01 | – | no | 2020 | 0.1000 |" in text and "✗" in text


def test_selected_rows_optimised_differently_are_flagged():
    paper = paper_table.PAPER["LRURec"]
    lru = _row("LRURec", **{m: v for m, v in paper.items()})
    sas = _row("SASRecWS", **{"recall@10": 0.05, "ndcg@10": 0.02})
    lru["config"] = dict(lru["config"], learner="adamw", learning_rate=0.001, clip_grad_norm={"max_norm": 5.0})
    sas["config"] = dict(sas["config"], learner="adam", learning_rate=0.001, clip_grad_norm=None)
    summary = {"dataset": "amazon-video-games", "models": {"LRURec": lru, "SASRecWS": sas}}
    rows = paper_table.compare_rows(summary)
    assert (rows["LRURec"]["optimizer"], rows["LRURec"]["decay"]) == ("adamw", "decoupled")
    assert (rows["SASRecWS"]["optimizer"], rows["SASRecWS"]["decay"]) == ("adam", "L2")
    text = paper_table.render(summary, rows, paper_table.select_by_validation(rows))
    assert "| adam (L2) |" in text and "**Not like for like:**" in text
    sas["config"]["learner"] = "adamw"
    rows = paper_table.compare_rows(summary)
    assert "Not like for like" not in paper_table.render(summary, rows, paper_table.select_by_validation(rows))


def test_selection_by_validation_and_several_summaries(tmp_path):
    import json
    paper = paper_table.PAPER["LRURec"]
    a = {"dataset": "amazon-video-games", "models": {
        "LRURec": _row("LRURec", valid=0.12, **{m: v * 1.2 for m, v in paper.items()}),
        "SASRecWS": _row("SASRecWS", valid=0.05, **{"recall@10": 0.05, "ndcg@10": 0.02})}}
    b = {"dataset": "amazon-video-games", "models": {
        "LRURec@dropout0.4": _row("LRURec", valid=0.13, **{m: v * 0.96 for m, v in paper.items()})}}
    pa, pb = tmp_path / "a" / "summary.json", tmp_path / "b" / "summary.json"
    for path, s in ((pa, a), (pb, b)):
        path.parent.mkdir()
        path.write_text(json.dumps(s))
    assert paper_table.main(["--summary", str(pa), "--summary", str(pb)]) == 0
    out = json.loads((tmp_path / "a" / "paper_comparison.json").read_text())
    # the best validation row is selected, not the best test row
    assert out["selected"]["LRURec"]["row"] == "LRURec@dropout0.4"
    assert out["selected"]["LRURec"]["candidates"] == 2 and not out["selected"]["LRURec"]["all_within_3pct"]
    assert out["selected"]["SASRec"]["row"] == "SASRecWS"
    assert "**LRURec@dropout0.4**" in (tmp_path / "a" / "paper_comparison.md").read_text()
    # one row name in two summaries is refused, not silently overwritten
    assert paper_table.main(["--summary", str(pa), "--summary", str(pa)]) == 2
    # ... unless one summary's rows get a label: a second run of the same model, selectable
    c = {"dataset": "amazon-video-games", "models": {
        "SASRecWS": _row("SASRecWS", valid=0.06, **{"recall@10": 0.06, "ndcg@10": 0.03})}}
    pc = tmp_path / "c" / "summary.json"
    pc.parent.mkdir()
    pc.write_text(json.dumps(c))
    assert paper_table.main(["--summary", str(pa), "--summary", f"{pc}@dropout0.6"]) == 0
    out = json.loads((tmp_path / "a" / "paper_comparison.json").read_text())
    assert out["selected"]["SASRec"]["row"] == "SASRecWS@dropout0.6" and out["selected"]["SASRec"]["candidates"] == 2


def test_other_seeds_are_repeats_not_candidates():
    paper = paper_table.PAPER["LRURec"]
    seeded = _row("LRURec", valid=0.2, **{m: v * 0.95 for m, v in paper.items()})
    seeded["config"] = dict(seeded["config"], seed=1)
    summary = {"dataset": "amazon-video-games", "models": {
        "LRURec": _row("LRURec", valid=0.1, **{m: v * 1.01 for m, v in paper.items()}),
        "LRURec@seed1": seeded}}
    rows = paper_table.compare_rows(summary)
    # a better validation score under another seed does not make that seed the selected model
    assert paper_table.select_by_validation(rows)["LRURec"]["row"] == "LRURec"
    (rep,) = paper_table.seed_repeats(rows)
    assert rep["seeds"] == [1, 2020] and rep["rows"] == ["LRURec", "LRURec@seed1"]
    r10 = rep["metrics"]["recall@10"]
    assert abs(r10["mean"] - paper["recall@10"] * 0.98) < 1e-12
    assert abs(r10["std"] - paper["recall@10"] * 0.06 / 2 ** 0.5) < 1e-12
    assert r10["seeds_within_3pct"] == 1 and r10["seeds"] == 2
    assert "over seeds [1, 2020]" in paper_table.render(summary, rows, None, [rep])
