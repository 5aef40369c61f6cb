"""benchmarks/efficiency.py --quick (every claim script, in this process): runs end to end and writes
every key; one claim script alone writes its own file.

No wall-clock bound here: on a busy machine the same run takes several times longer, and speed is
the benchmark's business, not a unit test's."""
import json

import pytest

HEADLINE_KEYS = [
    "train_epoch_ratio_sasrec_over_lrurec_ml-1m-pos4",
    "time_to_best_ratio_sasrec_over_lrurec_ml-1m-pos4",
    "train_epoch_ratio_sasrec_over_lrurec_video",
    "time_to_best_ratio_sasrec_over_lrurec_video",
    "incremental_throughput_ratio_lrurec_over_sasrec_L50",
    "incremental_throughput_ratio_lrurec_over_sasrec_L200",
    "lrurec_step_time_ratio_L2000_over_L50",
    "linrec_over_softmax_time_N2000",
    "linrec_over_softmax_memory_N2000",
    "lrurec_train_step_over_floor_L200",
]
# measured in the run itself, so never null in a quick run
MEASURED_KEYS = [
    "incremental_throughput_ratio_lrurec_over_sasrec_L50",
    "incremental_throughput_ratio_lrurec_over_sasrec_L200",
    "lrurec_step_time_ratio_L2000_over_L50",
    "lrurec_train_step_over_floor_L200",
    "linrec_over_softmax_time_N2000",
    "train_step_ratio_sasrec_over_lrurec_ml-1m-pos4",
    "train_epoch_estimate_ratio_sasrec_over_lrurec_video",
]


@pytest.mark.slow
def test_efficiency_quick(tmp_path):
    from benchmarks import efficiency

    out = tmp_path / "eff"
    assert efficiency.main(["--quick", "--out", str(out), "--results-dir", str(tmp_path / "no-results")]) == 0
    assert efficiency.HEADLINE_KEYS == HEADLINE_KEYS  # the contract

    result = json.loads((out / "efficiency.json").read_text())
    for key in HEADLINE_KEYS + ["machine", "command", "git_commit", "notes"]:
        assert key in result, key
    for key in HEADLINE_KEYS:
        value = result[key]
        assert value is None or (isinstance(value, (int, float)) and value > 0), (key, value)
        if value is None:
            assert key in result["notes"], f"{key} is null without a reason"
    for key in MEASURED_KEYS:
        assert isinstance(result[key], (int, float)) and result[key] > 0, (key, result[key])
    # the comparison summaries are absent here: null with the reason
    assert result["time_to_best_ratio_sasrec_over_lrurec_video"] is None
    assert "summary.json" in result["notes"]["time_to_best_ratio_sasrec_over_lrurec_video"]

    md = (out / "efficiency.md").read_text()
    assert "## Targets" in md and "lrurec_train_step_over_floor_L200" in md
    for png in ("incremental_inference.png", "long_sequences.png"):
        assert (out / png).stat().st_size > 1000, png


def test_one_claim_alone(tmp_path):
    from benchmarks import eff_floor
    from benchmarks.eff_args import claim_main

    assert claim_main(eff_floor, ["--quick", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "efficiency_floor.json").read_text())
    for key in ["command", "machine", "git_commit", "lrurec_train_step_over_floor_L200"]:
        assert key in result, key
    assert result["lrurec_train_step_over_floor_L200"] > 0
