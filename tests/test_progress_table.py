"""benchmarks/progress_table.py: finished rows and unfinished progress records side by side."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import progress_table  # noqa: E402


def _point(epoch, recall, best):
    return {"epoch": epoch, "recall@10": recall, "ndcg@10": recall / 2, "valid_score": recall, "is_best": best,
            "seconds": 10.0 * (epoch + 1)}


def test_finished_and_unfinished_side_by_side(tmp_path):
    summary = {"models": {"A": {"curve": [_point(0, 0.1, True), _point(1, 0.2, True), _point(2, 0.15, False)],
                                "epoch_seconds": [10, 10, 10]}}}
    progress = {"curve": [_point(0, 0.05, True)], "epoch_seconds": [20], "fit_done": False}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "B").mkdir()
    (tmp_path / "B" / "progress.json").write_text(json.dumps(progress))
    out = tmp_path / "t.md"
    progress_table.main([str(tmp_path / "summary.json"), str(tmp_path / "B" / "progress.json"), "--out", str(out)])
    text = out.read_text()
    assert "| 1 | **0.2000** | 0.1000 | – | – |" in text  # A's best so far; B has no epoch 1
    assert "| 2 | 0.1500 | 0.0750 | – | – |" in text
    assert "A: 3 epochs so far, best validation Recall@10 0.2000 at epoch 1" in text and "finished: yes" in text
    assert "B: 1 epochs so far" in text and "finished: no" in text


def test_a_file_without_a_curve_is_refused(tmp_path):
    (tmp_path / "x.json").write_text("{}")
    try:
        progress_table.main([str(tmp_path / "x.json")])
    except SystemExit as err:
        assert "no 'curve'" in str(err)
    else:
        raise AssertionError("accepted a file without a curve")
