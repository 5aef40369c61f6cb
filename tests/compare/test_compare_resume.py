"""A harness run stopped mid-model continues that model from its last finished epoch when the same
command is given again, and ends with the same metrics as a run that was never stopped: in this
process (Ctrl-C), and in the model's own process killed with SIGKILL."""
import json
import os
import sys
import textwrap

import pytest

from compare_helpers import argv, fake_result, tiny_path
from recbole_lru import compat
from recbole_lru.compare import cli, hooks, runner

MODELS = "LRURec,SASRec"  # the plugin's trainer, and RecBole's Trainer given the plugin's checkpoints


def _args(path, out, *extra):
    return argv(path, out, MODELS, "--epochs", "3", *extra, quick=False)


def _rows(out):
    return json.loads((out / "tiny" / "summary.json").read_text())["models"]


def _same_training(a, b):
    assert a["error"] is None and b["error"] is None, (a["error"], b["error"])
    assert a["test"] == b["test"] and a["best_valid"] == b["best_valid"]
    assert a["epochs_run"] == b["epochs_run"] == 3 and a["epochs_to_best"] == b["epochs_to_best"]
    strip = lambda curve: [(c["epoch"], c["valid_score"], c["ndcg@10"], c["is_best"]) for c in curve]  # noqa: E731
    assert strip(a["curve"]) == strip(b["curve"])
    assert len(a["epoch_seconds"]) == len(a["valid_seconds"]) == 3
    assert [c["seconds"] for c in a["curve"]] == sorted(c["seconds"] for c in a["curve"])  # one clock, continued


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run (once for the module: each test compares its own run with it)."""
    folder = tmp_path_factory.mktemp("reference")
    path = tiny_path(folder)
    assert cli.main(_args(path, folder / "out", "--in_process")) == 0
    return path, _rows(folder / "out")


def test_ctrl_c_after_the_first_epoch_then_the_same_command(tmp_path, monkeypatch, reference):
    path, ref = reference
    out = tmp_path / "r"
    save_last = hooks.HarnessTrainerMixin._save_last_checkpoint

    def interrupt_after_first_epoch(self, epoch):
        save_last(self, epoch)
        if epoch == 0:
            raise KeyboardInterrupt

    monkeypatch.setattr(hooks.HarnessTrainerMixin, "_save_last_checkpoint", interrupt_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        cli.main(_args(path, out, "--in_process"))
    work = out / "tiny" / ".work" / "LRURec"
    assert (work / "saved" / "LRURec-last.pth").is_file() and (work / "progress.json").is_file()
    assert "LRURec" not in _rows(out)  # nothing half-done is recorded as a row

    monkeypatch.setattr(hooks.HarnessTrainerMixin, "_save_last_checkpoint", save_last)
    # the first model is interrupted again, the second one then too: each resumes on its own
    calls = []

    def once_per_model(self, epoch):
        save_last(self, epoch)
        if epoch == 0 and self.config["model"] not in calls:
            calls.append(self.config["model"])
            if self.config["model"] == "SASRec":
                raise KeyboardInterrupt

    monkeypatch.setattr(hooks.HarnessTrainerMixin, "_save_last_checkpoint", once_per_model)
    with pytest.raises(KeyboardInterrupt):
        cli.main(_args(path, out, "--in_process"))
    assert calls == ["SASRec"]  # LRURec continued from its checkpoint: no epoch 0 again
    trained = []
    train_epoch = hooks.HarnessTrainerMixin._train_epoch

    def counting(self, train_data, epoch_idx, *a, **k):
        trained.append((self.config["model"], epoch_idx))
        return train_epoch(self, train_data, epoch_idx, *a, **k)

    monkeypatch.setattr(hooks.HarnessTrainerMixin, "_train_epoch", counting)
    assert cli.main(_args(path, out, "--in_process")) == 0
    assert trained == [("SASRec", 1), ("SASRec", 2)]  # LRURec had finished; SASRec goes on after epoch 0
    rows = _rows(out)
    for name in ("LRURec", "SASRec"):
        assert rows[name]["resumed_at_epochs"] == [1], name
        _same_training(rows[name], ref[name])
    assert not (out / "tiny" / ".work").exists()  # finished: checkpoints and progress removed
    assert "resumed after epoch 1" in (out / "tiny" / "summary.md").read_text()


def test_interrupted_while_testing_only_tests_again(tmp_path, monkeypatch, reference):
    path, ref = reference
    out = tmp_path / "r"
    load = compat.load_checkpoint

    def interrupt(*a, **k):  # the harness loads the best weights only to test them
        raise KeyboardInterrupt

    monkeypatch.setattr(compat, "load_checkpoint", interrupt)
    with pytest.raises(KeyboardInterrupt):
        cli.main(_args(path, out, "--in_process"))
    monkeypatch.setattr(compat, "load_checkpoint", load)
    monkeypatch.setattr(hooks.HarnessTrainerMixin, "_train_epoch", lambda *a, **k: pytest.fail("trained again"))
    assert cli.main(argv(path, out, "LRURec", "--epochs", "3", "--in_process", quick=False)) == 0
    _same_training(_rows(out)["LRURec"], ref["LRURec"])


def test_another_config_starts_from_scratch(tmp_path, monkeypatch):
    path, out = tiny_path(tmp_path), tmp_path / "r"
    save_last = hooks.HarnessTrainerMixin._save_last_checkpoint

    def interrupt(self, epoch):
        save_last(self, epoch)
        raise KeyboardInterrupt

    monkeypatch.setattr(hooks.HarnessTrainerMixin, "_save_last_checkpoint", interrupt)
    one = argv(path, out, "LRURec", "--epochs", "3", "--in_process", quick=False)
    with pytest.raises(KeyboardInterrupt):
        cli.main(one)
    monkeypatch.setattr(hooks.HarnessTrainerMixin, "_save_last_checkpoint", save_last)
    assert cli.main(one + ["--model_config", "LRURec:hidden_dropout_prob=0.3"]) == 0
    row = _rows(out)["LRURec"]
    assert row["resumed_at_epochs"] == [] and row["epochs_run"] == 3


_KILLING_WORKER = textwrap.dedent("""
    import os, signal, sys
    from recbole_lru.compare import hooks
    from recbole_lru.compare.worker import worker_main

    save_last = hooks.HarnessTrainerMixin._save_last_checkpoint

    def die_after_first_epoch(self, epoch):
        save_last(self, epoch)
        if epoch == 0:
            os.kill(os.getpid(), signal.SIGKILL)  # no handler, no cleanup: as kill -9

    hooks.HarnessTrainerMixin._save_last_checkpoint = die_after_first_epoch
    sys.exit(worker_main(sys.argv[1]))
""")


@pytest.mark.slow
def test_worker_killed_with_sigkill_continues_in_a_new_process(tmp_path, monkeypatch, reference):
    path, ref = reference
    script = tmp_path / "killing_worker.py"
    script.write_text(_KILLING_WORKER)
    real = runner.worker_command
    monkeypatch.setattr(runner, "worker_command", lambda spec: [sys.executable, str(script), spec])
    out = tmp_path / "r"
    one = argv(path, out, "LRURec", "--epochs", "3", quick=False)
    assert cli.main(one) == 1
    row = _rows(out)["LRURec"]
    assert "killed by signal 9" in row["error"]
    monkeypatch.setattr(runner, "worker_command", real)
    assert cli.main(one) == 0
    row = _rows(out)["LRURec"]
    assert row["resumed_at_epochs"] == [1]
    _same_training(row, ref["LRURec"])
    log = (out / "tiny" / "logs" / "LRURec.log").read_text()
    assert log.count("# ") >= 2 and "resumed from" in log  # both attempts' output, in order


@pytest.mark.slow
def test_worker_crash_is_recorded_and_the_rest_go_on(tmp_path, monkeypatch):
    def command(spec_path):
        spec = json.load(open(spec_path))
        if spec["model"] == "GRU4Rec":
            return [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"]
        code = f"open({spec['result_path']!r}, 'w').write({json.dumps(fake_result())!r})"
        return [sys.executable, "-c", code]

    monkeypatch.setattr(runner, "worker_command", command)
    out = tmp_path / "r"
    assert cli.main(argv(tiny_path(tmp_path), out, "GRU4Rec,NARM")) == 1
    summary = json.loads((out / "quick" / "tiny" / "summary.json").read_text())
    err = summary["models"]["GRU4Rec"]["error"]
    assert "status 3" in err and "boom" in err
    assert summary["models"]["NARM"]["error"] is None
    assert summary["models"]["NARM"]["test"]["recall@10"] == 0.1
    assert "boom" in (out / "quick" / "tiny" / "logs" / "GRU4Rec.log").read_text()
    assert os.path.isdir(out / "quick" / "tiny" / ".work" / "GRU4Rec")  # kept for the next attempt


@pytest.mark.slow
def test_harness_killed_with_sigkill_takes_its_worker_along_and_the_same_command_continues(tmp_path):
    import subprocess
    import time

    from filelock import FileLock

    from conftest import tiny_rows, write_inter

    # enough users that an epoch takes a noticeable moment, so the kill lands mid-model
    path = write_inter(tmp_path / "data", "tiny", tiny_rows(n_users=1000, n_items=300, max_len=20))
    out = tmp_path / "r"
    args = argv(path, out, "LRURec", "--epochs", "8", "--stopping_step", "8", quick=False)
    printed = open(tmp_path / "harness.txt", "w")
    harness = subprocess.Popen([sys.executable, "-m", "recbole_lru.compare", *args], cwd=tmp_path,
                               stdout=printed, stderr=subprocess.STDOUT)
    progress = out / "tiny" / ".work" / "LRURec" / "progress.json"
    deadline = time.time() + 240
    try:
        while time.time() < deadline and harness.poll() is None:
            if progress.is_file() and len(json.loads(progress.read_text())["epoch_seconds"]) >= 2:
                break
            time.sleep(0.2)
        assert harness.poll() is None, (tmp_path / "harness.txt").read_text()[-2000:]
        assert progress.is_file(), "no epoch finished in time"
    finally:
        harness.kill()  # SIGKILL: the harness cannot stop its worker itself
        harness.wait()
        printed.close()
    # the orphaned worker notices and exits (it holds the entry's lock while it runs); without that
    # it would train on and finish by itself, and the row below would not be a resumed one
    lock = FileLock(str(progress.parent / ".lock"))
    lock.acquire(timeout=10)
    lock.release()
    assert cli.main(args) == 0  # the same command, here in this process
    row = _rows(out)["LRURec"]
    assert row["error"] is None, row["error"]
    assert row["resumed_at_epochs"] and row["resumed_at_epochs"][0] >= 2
    assert row["epochs_run"] == 8 and [c["epoch"] for c in row["curve"]] == list(range(8))
