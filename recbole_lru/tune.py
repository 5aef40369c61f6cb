"""Hyperparameter search on Ray Tune: the trials of a RecBole hyper-file run in parallel.

``run_recbole_lru.py --params_file FILE --tool ray`` reads the same hyper-file as RecBole's
``HyperTuning`` (``name choice [..]``, ``uniform low,high``, ``loguniform low,high`` with the bounds
given as logarithms as in hyperopt, ``quniform low,high,q``), turns it into a list of trials
(every combination for ``exhaustive``, ``num_samples`` seeded draws for ``random``) and runs each
list entry as one Ray Tune trial through RecBole's ``objective_function``, ``cpus_per_trial`` CPUs
(and ``gpus_per_trial`` GPUs) each. Ray starts locally unless ``ray_address`` names a cluster
(``auto`` or ``HOST:PORT``). Every trial imports ``recbole_lru`` in its Ray worker, so the
plugin's models are found by name there.

Each trial writes its checkpoints to ``<checkpoint_dir>/trial-<hash of its parameters>/`` (RecBole's
file names only carry the second they were made in). Each finished trial is appended, by the driver, to the same JSON-lines file as the hyperopt path
(:func:`recbole_lru.quick_start.run_hyper`): ``{"params", "best_valid_score",
"best_valid_result", "test_result"}``. Started again, a search skips every trial whose parameters
are already in that file, so an interrupted search loses only the trials that were running.
"""
from __future__ import annotations

import ast
import hashlib
import itertools
import json
import math
import os
import random
import sys

__all__ = ["read_space", "trial_params", "finished_params", "run_ray"]

KINDS = ("choice", "uniform", "loguniform", "quniform")


def read_space(params_file: str) -> dict:
    """RecBole hyper-file -> ``{name: (kind, values)}`` in file order."""
    if not os.path.isfile(params_file):
        raise FileNotFoundError(f"params file not found: {params_file}")
    space = {}
    with open(params_file) as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = line.split(None, 2)
            if len(parts) != 3 or parts[1] not in KINDS:
                raise ValueError(f"{params_file} line {n}: expected 'name kind values' with kind one of "
                                 f"{list(KINDS)}, got {line.strip()!r}")
            name, kind, raw = parts
            try:
                values = ast.literal_eval(raw.strip()) if kind == "choice" else \
                    [float(v) for v in raw.strip().split(",")]
            except (ValueError, SyntaxError):
                raise ValueError(f"{params_file} line {n}: cannot read the values {raw.strip()!r}") from None
            if kind == "choice" and not (isinstance(values, list) and values):
                raise ValueError(f"{params_file} line {n}: choice needs a non-empty list, got {raw.strip()!r}")
            if kind != "choice" and len(values) != (3 if kind == "quniform" else 2):
                raise ValueError(f"{params_file} line {n}: {kind} needs "
                                 f"{'low,high,q' if kind == 'quniform' else 'low,high'}, got {raw.strip()!r}")
            space[name] = (kind, values)
    if not space:
        raise ValueError(f"{params_file} holds no parameters.")
    return space


def trial_params(space: dict, algo: str = "exhaustive", num_samples: int = 1, seed: int = 2020) -> list[dict]:
    """The search's trials, always the same list for the same file and arguments (so that a
    restarted search can tell which are done)."""
    if algo == "exhaustive":
        ranged = [k for k, (kind, _) in space.items() if kind != "choice"]
        if ranged:
            raise ValueError(f"algo=exhaustive needs 'choice' for every parameter; {ranged} are ranges: "
                             f"use --algo=random with --num_samples=N.")
        names = list(space)
        return [dict(zip(names, combo)) for combo in itertools.product(*(space[k][1] for k in names))]
    if algo != "random":
        raise ValueError(f"--tool ray runs algo exhaustive or random, not {algo!r} "
                         f"(bayes proposes one trial after another: use --tool hyperopt).")
    if num_samples < 1:
        raise ValueError(f"--num_samples={num_samples} must be at least 1.")
    rng, out = random.Random(seed), []
    for _ in range(num_samples):
        params = {}
        for name, (kind, v) in space.items():
            if kind == "choice":
                params[name] = rng.choice(v)
            elif kind == "uniform":
                params[name] = rng.uniform(v[0], v[1])
            elif kind == "loguniform":  # hyperopt's: the bounds are logarithms
                params[name] = math.exp(rng.uniform(v[0], v[1]))
            else:
                params[name] = round(rng.uniform(v[0], v[1]) / v[2]) * v[2]
        out.append(params)
    return out


def _key(params: dict) -> str:
    return json.dumps(params, sort_keys=True)


def finished_params(output_file: str) -> set:
    """Keys of the trials already in a JSON-lines output (either tool's); a torn last line from an
    interrupted write is ignored, so that trial runs again."""
    done = set()
    if os.path.isfile(output_file):
        with open(output_file) as fh:
            for line in fh:
                try:
                    done.add(_key(json.loads(line)["params"]))
                except (ValueError, KeyError, TypeError):
                    continue
    return done


def trial_record(params: dict, result: dict) -> dict:
    """One output line: the same fields as the hyperopt path writes."""
    return {
        "params": params,
        "best_valid_score": float(result["best_valid_score"]),
        "best_valid_result": {k: float(v) for k, v in (result["best_valid_result"] or {}).items()},
        "test_result": {k: float(v) for k, v in (result["test_result"] or {}).items()},
    }


def _trial(config, trials=None, fixed=None, config_file_list=None, cwd=None, threads=1):
    """One Ray Tune trial (runs in a Ray worker process)."""
    import recbole_lru  # noqa: F401  (registers the models in this worker)
    import torch
    from ray import tune
    from recbole.quick_start import objective_function

    if cwd and os.path.isdir(cwd):
        os.chdir(cwd)  # relative paths of the search (dataset/, saved/, log/) mean the driver's
    torch.set_num_threads(max(1, int(threads)))
    params = trials[config["trial"]]
    settings = {**fixed, **params}
    if "gpu_id" not in settings:
        # the GPUs Ray gave this trial (none: CPU), which RecBole would otherwise reset to '0'
        settings["gpu_id"] = os.environ.get("CUDA_VISIBLE_DEVICES", "") if fixed.get("_gpus") else ""
    settings.pop("_gpus", None)
    # RecBole names checkpoints by the second they were created: trials that start together
    # would overwrite each other's, and test each other's weights
    digest = hashlib.sha1(_key(params).encode()).hexdigest()[:10]
    settings["checkpoint_dir"] = os.path.join(settings.get("checkpoint_dir") or "saved", f"trial-{digest}")
    result = objective_function(settings, config_file_list, saved=True)
    tune.report(recbole_lru_record=json.dumps(trial_record(params, result)))


def _append_callback(output_file: str):
    from ray import tune

    class AppendTrials(tune.Callback):
        """Writes each finished trial to the JSON-lines output, from the driver only."""

        def on_trial_complete(self, iteration, trials, trial, **info):
            record = (trial.last_result or {}).get("recbole_lru_record")
            if record:
                with open(output_file, "a") as fh:
                    fh.write(record + "\n")
                    fh.flush()

    return AppendTrials()


def run_ray(model: str, dataset: str, params_file: str, config_file_list=None, config_dict=None,
            algo: str = "exhaustive", num_samples: int = 1, output_file: str | None = None,
            ray_address: str | None = None, cpus_per_trial: float = 1, gpus_per_trial: float = 0,
            num_cpus: int | None = None, seed: int = 2020) -> dict:
    """Run the search on Ray Tune; returns the best trial of the output file (this run's and
    earlier runs') as ``{"best_params", "best_valid_score", "best_test_result", "output_file",
    "trials_run", "trials_skipped"}``."""
    space = read_space(params_file)
    trials_all = trial_params(space, algo, num_samples, seed)
    if cpus_per_trial <= 0 or gpus_per_trial < 0:
        raise ValueError(f"--cpus_per_trial={cpus_per_trial} must be > 0 and --gpus_per_trial={gpus_per_trial} >= 0.")
    output_file = os.path.abspath(output_file or f"hyper_{model}_{dataset}.jsonl")
    os.makedirs(os.path.dirname(output_file), exist_ok=True)
    done = finished_params(output_file)
    todo = [p for p in trials_all if _key(p) not in done]
    fixed = {**(config_dict or {}), "model": model, "dataset": dataset, "_gpus": gpus_per_trial > 0}
    for key in ("data_path", "checkpoint_dir"):  # the same folders whatever a worker's directory
        if isinstance(fixed.get(key), str):
            fixed[key] = os.path.abspath(fixed[key])
    if todo:
        _tune(todo, fixed, config_file_list, output_file, ray_address, cpus_per_trial, gpus_per_trial, num_cpus)
    return _summary(output_file, len(todo), len(trials_all) - len(todo), config_dict)


def _worker_env() -> dict:
    """Ray workers start with ``ray_worker/sitecustomize.py`` (numpy 2's missing ``np.bool8``)."""
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ray_worker")
    path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
    return {"env_vars": {"PYTHONPATH": path}}


def _tune(todo, fixed, config_file_list, output_file, ray_address, cpus, gpus, num_cpus):
    try:
        import pyarrow  # noqa: F401  (Ray Tune 2.6 reads its results back through pyarrow.fs)
    except ImportError:
        raise ValueError("--tool ray needs pyarrow (Ray Tune's result storage): pip install pyarrow") from None
    import ray
    from ray import air, tune

    started = not ray.is_initialized()
    if started:
        # a local runtime stays on the loopback interface: nothing of it is reachable from, or talks to, elsewhere
        kwargs = ({"address": ray_address} if ray_address else
                  {"num_cpus": num_cpus, "include_dashboard": False, "_node_ip_address": "127.0.0.1"})
        ray.init(log_to_driver=False, configure_logging=False, runtime_env=_worker_env(), **kwargs)
    try:
        trainable = tune.with_resources(
            tune.with_parameters(_trial, trials=todo, fixed=fixed, config_file_list=config_file_list,
                                 cwd=os.getcwd(), threads=max(1, int(cpus))),
            {"cpu": cpus, "gpu": gpus})
        tuner = tune.Tuner(
            trainable, param_space={"trial": tune.grid_search(list(range(len(todo))))},
            # a fresh worker per trial: RecBole keeps state in globals (logging handlers, seeds)
            tune_config=tune.TuneConfig(num_samples=1, chdir_to_trial_dir=False, reuse_actors=False),
            run_config=air.RunConfig(name=f"recbole_lru_{os.path.splitext(os.path.basename(output_file))[0]}",
                                     local_dir=os.path.join(os.path.dirname(output_file), "ray_results"),
                                     callbacks=[_append_callback(output_file)], verbose=0))
        results = tuner.fit()
        errors = [r.error for r in results if r.error is not None]
        if errors:
            first = str(errors[0]).strip().splitlines()[-1]
            print(f"{len(errors)} of {len(todo)} trials failed (they run again when the search is restarted); "
                  f"first: {first}", file=sys.stderr)
    finally:
        if started:
            ray.shutdown()


def _summary(output_file, ran, skipped, config_dict):
    records = []
    with open(output_file) as fh:
        for line in fh:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    if not records:
        raise RuntimeError(f"no trial finished; nothing was written to {output_file}.")
    bigger = (config_dict or {}).get("valid_metric_bigger", True)
    best = (max if bigger else min)(records, key=lambda r: r["best_valid_score"])
    print(f"best params: {best['params']}", file=sys.stderr)
    return {"best_params": best["params"], "best_valid_score": best["best_valid_score"],
            "best_test_result": best["test_result"], "output_file": output_file,
            "trials_run": ran, "trials_skipped": skipped}
