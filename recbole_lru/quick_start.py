"""Library entry points behind ``run_recbole_lru.py``: a run (any RecBole model, resumable), a
hyperparameter search whose trials are written out as each one finishes, and a
``load_data_and_model`` that treats a checkpoint's stored paths as data."""
from __future__ import annotations

import json
import os
import re
import sys
from logging import getLogger

from .pipeline import fit_and_test, prepare_data


__all__ = ["run", "run_hyper", "parse_overrides", "load_data_and_model", "check_config_files", "fit_and_test", "prepare_data",
           "CALLER_ONLY_KEYS", "ConfigFileError"]


class ConfigFileError(ValueError):
    """A ``--config_files`` file that is missing, not YAML, or not a mapping of settings."""


def check_config_files(files) -> None:
    """One clear error for a config file RecBole's ``Config`` would choke on (it raises yaml's
    ParserError, or a TypeError for a file that is empty or holds a list)."""
    import yaml

    for file in files or ():
        if not os.path.isfile(file):
            what = "a folder" if os.path.isdir(file) else "not found"
            raise ConfigFileError(f"config file {file} is {what}; --config_files takes YAML files separated by spaces")
        try:
            with open(file, encoding="utf-8") as fh:
                content = yaml.load(fh.read(), Loader=yaml.FullLoader)  # RecBole's loader
        except UnicodeDecodeError:
            raise ConfigFileError(f"config file {file} is not UTF-8 text; write it as YAML key: value lines") from None
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ConfigFileError(f"config file {file} is not valid YAML{where}: {problem}. "
                                  f"Fix that line (settings are written key: value)") from None
        if not isinstance(content, dict):
            got = "empty" if content is None else f"a YAML {type(content).__name__}, not a mapping"
            raise ConfigFileError(f"config file {file} is {got}; it must hold key: value lines "
                                  f"(e.g. epochs: 50), or leave it out of --config_files")


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
            value = _yaml_flow(value)
        if key in out and out[key] != value:
            raise ValueError(f"--{key} is given twice ({out[key]!r} and {value!r}); keep one.")
        out[key] = value
    return out


def _yaml_flow(value: str):
    """``{inter: [user_id, item_id]}`` (the YAML form a config file uses) as a dict or list; any
    other string unchanged."""
    import yaml

    if not value.strip().startswith(("{", "[")):
        return value
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    return parsed if isinstance(parsed, (dict, list)) else value


def run(model: str, dataset: str, config_file_list=None, config_dict=None, saved: bool = True,
        nproc: int = 1, world_size: int = -1, ip: str = "localhost", port: str = "5678",
        group_offset: int = 0, resume: str | None = None) -> dict:
    """Train, validate and test ``model`` on ``dataset`` (any RecBole model or the plugin's).

    Without ``resume`` this is ``recbole.quick_start.run``. With ``resume=<checkpoint>`` training
    continues from that checkpoint (RecBole's ``Trainer.resume_checkpoint``). With ``nproc > 1`` or
    ``world_size > 0`` it runs :func:`recbole_lru.launch.run` (also with ``resume``).

    Returns:
        RecBole's result dict: best_valid_score, best_valid_result, test_result, ...
    """
    from recbole.quick_start import run as recbole_run

    check_config_files(config_file_list)
    if nproc != 1 or world_size > 0:
        from . import launch  # gloo on CPU, NCCL on GPUs, exact sharding, resume with N processes

        return launch.run(model, dataset, config_file_list, config_dict, saved=saved, nproc=nproc,
                               world_size=world_size, ip=ip, port=port, group_offset=group_offset,
                               resume=resume)
    if resume is None:
        return recbole_run(model, dataset, config_file_list=config_file_list, config_dict=config_dict,
                           saved=saved, nproc=nproc, world_size=world_size, ip=ip, port=port,
                           group_offset=group_offset)
    return _run_resumed(model, dataset, config_file_list, config_dict, saved, resume)


def _run_resumed(model, dataset, config_file_list, config_dict, saved, resume):
    from recbole.config import Config
    from recbole.utils import get_model, get_trainer, init_seed

    from .checkpoint import CheckpointError
    from .trainer import SequentialTrainer, read_training_checkpoint

    read_training_checkpoint(resume, model)  # a wrong file fails before the data is read
    config = Config(model=model, dataset=dataset, config_file_list=config_file_list, config_dict=config_dict)
    _, train_data, valid_data, test_data = prepare_data(config)
    logger = getLogger()
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    net = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    if isinstance(trainer, SequentialTrainer):
        trainer.resume_checkpoint(resume)
    else:  # RecBole's trainer: the same checks first, then its own resume
        read_training_checkpoint(resume, config["model"])
        try:
            trainer.resume_checkpoint(resume)
        except (RuntimeError, KeyError, ValueError) as err:
            raise CheckpointError(f"{resume} does not fit the {config['model']} built from this config; resume "
                                  f"with the config the run was started with. Details: {err}") from None
    logger.info(f"resumed from {resume}")
    return fit_and_test(trainer, config, train_data, valid_data, test_data, saved)


def run_hyper(model: str, dataset: str, params_file: str, config_file_list=None, config_dict=None,
              algo: str = "exhaustive", max_evals: int | None = None, output_file: str | None = None) -> dict:
    """Hyperparameter search with RecBole's ``HyperTuning`` over a RecBole hyper-file.

    ``max_evals`` caps the number of trials: by default 100 for random/bayes and the whole grid
    for exhaustive search (which then runs the first ``max_evals`` points of the grid; RecBole's
    own ``HyperTuning`` ignores ``max_evals`` there).

    Each trial's parameters and metrics are appended to ``output_file`` (one JSON object per
    line) the moment the trial ends, so an interrupted search loses nothing.

    Returns:
        {"best_params": ..., "best_valid_score": ..., "best_test_result": ..., "output_file": ...}
    """
    from recbole.quick_start import objective_function
    from recbole.trainer import HyperTuning

    if algo not in ("exhaustive", "random", "bayes"):
        raise ValueError(f"algo={algo!r} must be one of exhaustive, random, bayes")
    if not os.path.isfile(params_file):
        raise FileNotFoundError(f"params file not found: {params_file}")
    if max_evals is not None and (type(max_evals) is not int or max_evals < 1):
        raise ValueError(f"max_evals={max_evals!r} must be a positive integer")
    check_config_files(config_file_list)
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
                        algo=algo, max_evals=max_evals or 100)
    if algo == "exhaustive" and max_evals is not None:
        grid = tuner.max_evals  # HyperTuning sets the grid size here
        tuner.max_evals = min(grid, max_evals)
        print(f"exhaustive search: {tuner.max_evals} of the grid's {grid} points (--max_evals={max_evals})",
              file=sys.stderr)
    tuner.run()
    print(f"best params: {tuner.best_params}", file=sys.stderr)
    return {
        "best_params": tuner.best_params,
        "best_valid_score": tuner.best_score,
        "best_test_result": tuner.params2result[tuner.params2str(tuner.best_params)]["test_result"],
        "output_file": output_file,
    }


# Settings that name files or folders, start processes or pick hardware: load_data_and_model takes
# them from the caller (config_dict) or RecBole's defaults, never from the checkpoint.
CALLER_ONLY_KEYS = {
    "data_path": "dataset/", "checkpoint_dir": "saved", "dataset_save_path": None, "dataloaders_save_path": None,
    "save_dataset": False, "save_dataloaders": False, "log_wandb": False, "wandb_project": "recbole",
    "pre_model_path": None, "pretrain_path": None, "mf_pretrain_path": None, "mlp_pretrain_path": None,
    "warm_up": None, "config_files": None, "device": None, "gpu_id": "0", "use_gpu": True, "nproc": 1,
    "world_size": -1, "offset": 0, "ip": "localhost", "port": "5678", "local_rank": 0, "single_spec": True,
}
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")


def load_data_and_model(model_file, config_dict: dict | None = None):
    """RecBole's ``load_data_and_model`` with the checkpoint read as data.

    The checkpoint sets the model, the dataset's name and every setting of the model, the data
    filtering and splitting, and evaluation. It cannot set anything in :data:`CALLER_ONLY_KEYS`
    (paths such as ``data_path``, ``checkpoint_dir``, ``dataset_save_path``, whether to save
    datasets, pretrained-model paths, the device, distributed settings): those come from
    ``config_dict`` or RecBole's defaults. So pass ``config_dict={"data_path": ...}`` when the data
    is not under ``dataset/``.

    Returns:
        config, model, dataset, train_data, valid_data, test_data (as RecBole's).
    """
    import torch
    from recbole.utils import get_model, init_seed

    from .checkpoint import CheckpointError, checkpoint_config, load_checkpoint, load_weights

    model_file = os.fspath(model_file)
    checkpoint = load_checkpoint(model_file, map_location="cpu")
    config = checkpoint_config(checkpoint, model_file)
    final = config.final_config_dict
    name = config["dataset"]
    if not _SAFE_NAME.fullmatch(name) or ".." in name:
        raise CheckpointError(f"{model_file} names the dataset {name!r}, which is not a dataset name (it would "
                              f"be read as a path)")
    for bench in final.get("benchmark_filename") or []:
        if not isinstance(bench, str) or not _SAFE_NAME.fullmatch(bench) or ".." in bench:
            raise CheckpointError(f"{model_file} names the benchmark file {bench!r}, which is not a file suffix")
    caller = dict(config_dict or {})
    for key, default in CALLER_ONLY_KEYS.items():
        final[key] = caller.pop(key, default)
    if final["device"] is None:
        final["device"] = torch.device("cuda" if final["use_gpu"] and torch.cuda.is_available() else "cpu")
    final["device"] = torch.device(final["device"])
    final.update(caller)  # any other setting the caller passes
    if name == "ml-100k" and "data_path" not in (config_dict or {}):
        import recbole  # RecBole's Config points ml-100k at the copy in its wheel

        final["data_path"] = os.path.join(os.path.dirname(recbole.__file__), "dataset_example", name)
    else:
        final["data_path"] = os.path.join(final["data_path"], name)

    dataset, train_data, valid_data, test_data = prepare_data(config)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    load_weights(model, checkpoint, model_file)
    return config, model, dataset, train_data, valid_data, test_data
