"""Library entry points behind ``run_recbole_lru.py``: a run (any RecBole model, resumable) and a
hyperparameter search whose trials are written out as each one finishes."""
from __future__ import annotations

import json
import os
import sys
from logging import getLogger

from . import registry

__all__ = ["run", "run_hyper", "parse_overrides"]


def parse_overrides(args: list[str]) -> dict:
    """``--key=value`` strings -> config dict, values read as RecBole reads its command line
    (Python literals where they parse, strings otherwise)."""
    import ast

    out = {}
    for arg in args:
        if not arg.startswith("--") or "=" not in arg:
            raise ValueError(f"Unrecognised argument {arg!r}: config overrides are written --key=value.")
        key, value = arg[2:].split("=", 1)
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass
        if key in out and out[key] != value:
            raise ValueError(f"--{key} is given twice ({out[key]!r} and {value!r}); keep one.")
        out[key] = value
    return out


def run(model: str, dataset: str, config_file_list=None, config_dict=None, saved: bool = True,
        nproc: int = 1, world_size: int = -1, ip: str = "localhost", port: str = "5678",
        group_offset: int = 0, resume: str | None = None) -> dict:
    """Train, validate and test ``model`` on ``dataset`` (any RecBole model or the plugin's).

    Without ``resume`` this is ``recbole.quick_start.run``. With ``resume=<checkpoint>`` training
    continues from that checkpoint (RecBole's ``Trainer.resume_checkpoint``). With ``nproc > 1`` or
    ``world_size > 0`` it runs :func:`recbole_lru.distributed.run` (also with ``resume``).

    Returns:
        RecBole's result dict: best_valid_score, best_valid_result, test_result, ...
    """
    registry.register()
    from recbole.quick_start import run as recbole_run

    if nproc != 1 or world_size > 0:
        from . import distributed  # gloo on CPU, NCCL on GPUs, exact sharding, resume with N processes

        return distributed.run(model, dataset, config_file_list, config_dict, saved=saved, nproc=nproc,
                               world_size=world_size, ip=ip, port=port, group_offset=group_offset,
                               resume=resume)
    if resume is None:
        return recbole_run(model, dataset, config_file_list=config_file_list, config_dict=config_dict,
                           saved=saved, nproc=nproc, world_size=world_size, ip=ip, port=port,
                           group_offset=group_offset)
    return _run_resumed(model, dataset, config_file_list, config_dict, saved, resume)


def _run_resumed(model, dataset, config_file_list, config_dict, saved, resume):
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_logger, init_seed

    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    data = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, data)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    net = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    trainer.resume_checkpoint(resume)
    logger.info(f"resumed from {resume}")
    best_valid_score, best_valid_result = trainer.fit(train_data, valid_data, saved=saved,
                                                      show_progress=config["show_progress"])
    test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
    logger.info(f"best valid : {best_valid_result}")
    logger.info(f"test result: {test_result}")
    return {
        "best_valid_score": best_valid_score,
        "valid_score_bigger": config["valid_metric_bigger"],
        "best_valid_result": best_valid_result,
        "test_result": test_result,
    }


def run_hyper(model: str, dataset: str, params_file: str, config_file_list=None, config_dict=None,
              algo: str = "exhaustive", max_evals: int = 100, output_file: str | None = None) -> dict:
    """Hyperparameter search with RecBole's ``HyperTuning`` over a RecBole hyper-file.

    Each trial's parameters and metrics are appended to ``output_file`` (one JSON object per
    line) the moment the trial ends, so an interrupted search loses nothing.

    Returns:
        {"best_params": ..., "best_valid_score": ..., "best_test_result": ..., "output_file": ...}
    """
    registry.register()
    from recbole.quick_start import objective_function
    from recbole.trainer import HyperTuning

    if algo not in ("exhaustive", "random", "bayes"):
        raise ValueError(f"algo={algo!r} must be one of exhaustive, random, bayes")
    if not os.path.isfile(params_file):
        raise FileNotFoundError(f"params file not found: {params_file}")
    fixed = dict(config_dict or {})
    fixed.update(model=model, dataset=dataset)
    output_file = output_file or f"hyper_{model}_{dataset}.jsonl"
    os.makedirs(os.path.dirname(os.path.abspath(output_file)), exist_ok=True)

    def objective(params, fixed_config_file_list=None, saved=True):
        result = objective_function({**fixed, **params}, fixed_config_file_list, saved=saved)
        with open(output_file, "a") as fh:
            fh.write(json.dumps({
                "params": params,
                "best_valid_score": float(result["best_valid_score"]),
                "best_valid_result": {k: float(v) for k, v in (result["best_valid_result"] or {}).items()},
                "test_result": {k: float(v) for k, v in (result["test_result"] or {}).items()},
            }) + "\n")
            fh.flush()
        return result

    tuner = HyperTuning(objective, params_file=params_file, fixed_config_file_list=config_file_list,
                        algo=algo, max_evals=max_evals)
    tuner.run()
    print(f"best params: {tuner.best_params}", file=sys.stderr)
    return {
        "best_params": tuner.best_params,
        "best_valid_score": tuner.best_score,
        "best_test_result": tuner.params2result[tuner.params2str(tuner.best_params)]["test_result"],
        "output_file": output_file,
    }
