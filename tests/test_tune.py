"""Ray Tune search: the hyper-file as RecBole reads it, the trial list, skipping finished trials,
and a real search with a local 2-CPU Ray runtime on tiny data."""
import glob
import json
import math
import os

import pytest

from conftest import REPO
from recbole_lru import tune as T


def _hyper(tmp_path, text):
    path = tmp_path / "space.hyper"
    path.write_text(text)
    return str(path)


def test_the_paper_grid_file_reads_unchanged_as_16_trials():
    space = T.read_space(os.path.join(REPO, "properties", "hyper", "lrurec.hyper"))
    assert space == {"weight_decay": ("choice", [0.0, 1e-6, 1e-4, 1e-2]),
                     "hidden_dropout_prob": ("choice", [0.2, 0.4, 0.6, 0.8])}
    trials = T.trial_params(space, "exhaustive")
    assert len(trials) == 16 and len({json.dumps(t, sort_keys=True) for t in trials}) == 16
    assert trials[0] == {"weight_decay": 0.0, "hidden_dropout_prob": 0.2}


def test_random_draws_follow_hyperopt_ranges_and_repeat_for_a_restart(tmp_path):
    space = T.read_space(_hyper(tmp_path, "learning_rate loguniform -8,0\nhidden_dropout_prob uniform 0.1,0.5\n"
                                          "n_layers quniform 1,4,1\nloss_type choice ['CE']\n"))
    draws = T.trial_params(space, "random", num_samples=20)
    assert draws == T.trial_params(space, "random", num_samples=20)  # the same list when started again
    for d in draws:
        assert math.exp(-8) <= d["learning_rate"] <= 1 and 0.1 <= d["hidden_dropout_prob"] <= 0.5
        assert d["n_layers"] in (1.0, 2.0, 3.0, 4.0) and d["loss_type"] == "CE"


@pytest.mark.parametrize("text,algo,match", [
    ("lr uniform 0.1,0.2\n", "exhaustive", "use --algo=random"),
    ("lr normal 0,1\n", "random", "kind one of"),
    ("lr choice [1,\n", "random", "cannot read the values"),
    ("lr quniform 1,2\n", "random", "low,high,q"),
    ("lr choice []\n", "random", "non-empty list"),
    ("lr choice [1]\n", "bayes", "use --tool hyperopt"),
], ids=["range-in-grid", "unknown-kind", "bad-list", "quniform-args", "empty-choice", "bayes"])
def test_bad_search_input_is_one_clear_error(tmp_path, text, algo, match):
    with pytest.raises(ValueError, match=match):
        T.trial_params(T.read_space(_hyper(tmp_path, text)), algo, num_samples=2)


def test_finished_trials_are_read_from_either_tools_output(tmp_path):
    out = tmp_path / "trials.jsonl"
    out.write_text(json.dumps({"params": {"b": 0.2, "a": 1}, "best_valid_score": 0.1}) + "\n"
                   + '{"params": {"a": 2')  # a line torn by an interruption: that trial runs again
    assert T.finished_params(str(out)) == {json.dumps({"a": 1, "b": 0.2}, sort_keys=True)}


@pytest.mark.slow
def test_ray_search_runs_trials_in_parallel_and_skips_finished_ones(tiny_data, tmp_path):
    params_file = _hyper(tmp_path, "weight_decay choice [0.0,0.01,0.1]\n")
    out = tmp_path / "trials.jsonl"
    earlier = {"params": {"weight_decay": 0.01}, "best_valid_score": 0.5, "best_valid_result": {"recall@10": 0.5},
               "test_result": {"recall@10": 0.4}}
    out.write_text(json.dumps(earlier) + "\n")  # as left by an interrupted search
    config = {**tiny_data, "checkpoint_dir": "saved"}  # relative: must mean this folder in every worker
    result = T.run_ray("LRURec", "tiny", params_file, config_dict=config, output_file=str(out),
                       cpus_per_trial=1, num_cpus=2)
    assert result["trials_run"] == 2 and result["trials_skipped"] == 1
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[0] == earlier and len(lines) == 3
    assert sorted(r["params"]["weight_decay"] for r in lines[1:]) == [0.0, 0.1]
    for r in lines[1:]:
        assert set(r) == {"params", "best_valid_score", "best_valid_result", "test_result"}
        assert 0 <= r["test_result"]["recall@10"] <= 1
    # each trial's best checkpoint, in its own folder under the driver's checkpoint_dir
    trial_dirs = os.listdir(tmp_path / "saved")
    assert len(trial_dirs) == 2 and all(len(os.listdir(tmp_path / "saved" / d)) == 1 for d in trial_dirs)
    # Ray's own record of each trial: two worker processes whose running times overlap
    spans = []
    for f in glob.glob(str(tmp_path / "ray_results" / "*" / "*" / "result.json")):
        last = json.loads(open(f).read().splitlines()[-1])
        spans.append((last["pid"], last["timestamp"] - last["time_total_s"], last["timestamp"]))
    assert len(spans) == 2 and spans[0][0] != spans[1][0]
    assert max(s[1] for s in spans) < min(s[2] for s in spans), spans
    import ray

    assert not ray.is_initialized()  # the local runtime it started is shut down
