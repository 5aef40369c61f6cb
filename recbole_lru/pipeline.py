"""RecBole's straight pipeline, written once: its start (seed, logger, dataset, loaders) and its end
(fit, test, log, result dict), as ``recbole.quick_start.run_recbole`` runs them. Used by resumed
runs (:mod:`recbole_lru.quick_start`), each process of a distributed run (:mod:`recbole_lru.launch`)
and the comparison worker; it imports nothing of the plugin, so all of them can import it."""
from __future__ import annotations

from logging import getLogger

__all__ = ["prepare_data", "fit_and_test"]


def prepare_data(config, write_log: bool = True):
    """The start of RecBole's ``run_recbole``: seed, logger, dataset, and its three loaders.

    ``write_log=False`` skips the log file (the other processes of a distributed run).
    Returns dataset, train_data, valid_data, test_data."""
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_logger, init_seed

    init_seed(config["seed"], config["reproducibility"])
    if write_log:
        init_logger(config)
    logger = getLogger()
    logger.info(config)
    dataset = create_dataset(config)
    logger.info(dataset)
    return (dataset, *data_preparation(config, dataset))


def fit_and_test(trainer, config, train_data, valid_data, test_data, saved: bool) -> dict:
    """The end of RecBole's ``run_recbole``: train with validation, test the best (or last)
    weights, log both, and return RecBole's result dict."""
    logger = getLogger()
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
