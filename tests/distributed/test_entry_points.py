"""The command line and ``quick_start.run`` reach the multi-process and Ray code with every flag."""
import pytest

from recbole_lru import cli, launch, quick_start, tune


def test_nproc_and_resume_go_to_the_distributed_run(monkeypatch):
    calls = []
    monkeypatch.setattr(launch, "run", lambda *a, **k: calls.append((a, k)) or {"ok": 1})
    assert quick_start.run("LRURec", "ml-100k", config_dict={"epochs": 1}, nproc=2, resume="x-last.pth") == {"ok": 1}
    (args, kwargs), = calls
    assert args[:2] == ("LRURec", "ml-100k") and kwargs["nproc"] == 2 and kwargs["resume"] == "x-last.pth"
    # a second machine: one process, global ranks from group_offset
    cli.main(["--model=LRURec", "--nproc", "1", "--world_size", "2", "--group_offset", "1", "--ip", "10.0.0.1",
              "--port", "6000", "--epochs=1"])
    kwargs = calls[-1][1]
    assert (kwargs["nproc"], kwargs["world_size"], kwargs["group_offset"], kwargs["ip"], kwargs["port"]) == \
        (1, 2, 1, "10.0.0.1", "6000")


def test_tool_ray_reaches_the_ray_search_with_its_flags(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(tune, "run_ray", lambda *a, **k: calls.append((a, k)) or {"best_params": {}})
    assert cli.main(["--params_file", "f.hyper", "--tool", "ray", "--ray_address", "auto", "--num_samples", "3",
                     "--cpus_per_trial", "2", "--gpus_per_trial", "0.5", "--algo", "random",
                     "--output_file", "t.jsonl", "--epochs=2"]) == 0
    (args, kwargs), = calls
    assert args[2] == "f.hyper" and args[4] == {"epochs": 2}
    assert kwargs == {"algo": "random", "num_samples": 3, "output_file": "t.jsonl", "ray_address": "auto",
                      "cpus_per_trial": 2.0, "gpus_per_trial": 0.5}


def test_a_bad_request_is_one_line_on_the_command_line(capsys):
    assert cli.main(["--model=LRURec", "--nproc", "2", "--world_size", "2", "--group_offset", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: --nproc=2 processes from rank --group_offset=1")


def test_bayes_on_ray_is_refused_in_one_line(tmp_path, capsys):
    hyper = tmp_path / "g.hyper"
    hyper.write_text("weight_decay choice [0.0,0.01]\n")
    assert cli.main(["--params_file", str(hyper), "--tool", "ray", "--algo", "bayes"]) == 2
    assert "use --tool hyperopt" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--cpus_per_trial=0", "--gpus_per_trial=-1"])
def test_bad_trial_resources_are_refused(tmp_path, flag):
    hyper = tmp_path / "g.hyper"
    hyper.write_text("weight_decay choice [0.0]\n")
    name, value = flag[2:].split("=")
    with pytest.raises(ValueError, match="must be"):
        tune.run_ray("LRURec", "ml-100k", str(hyper), output_file=str(tmp_path / "o.jsonl"), **{name: float(value)})
