"""Side-by-side comparison of recommenders on one dataset under one evaluation protocol.

Every model runs with its own default YAML plus the same protocol:

* leave-one-out split (``LS: valid_and_test``, time order, grouped by user), full ranking;
* the same ``MAX_ITEM_LIST_LENGTH`` (``--max_len``; default the dataset YAML's value);
* Recall, NDCG and MRR at 10 and 20;
* the same early stopping (``valid_metric`` Recall@10, ``stopping_step`` validations, ``epochs`` cap);
* optionally ``mask_history: True`` (the user's input items are removed from the ranking) and one
  optimizer for all (``--optimizer adamw``).

    python -m recbole_lru.compare --dataset amazon-video-games --data_path DATASETS \\
        --models LRURec,SASRecWS --mask_history --optimizer adamw --out results

The parts, in the order a run meets them:

=============  ===============================================================================
``cli``        the command line (``__main__`` runs it)
``entries``    ``--models`` / ``--model_config``: the rows and their own overrides
``data``       where the dataset is, its YAML settings, the ``--quick`` user subset
``optim``      each row's optimisation, and the refusal of a shared setting it would change
``run``        :func:`compare`: the protocol, the loop over entries, where files go
``runner``     one entry in a fresh process (or this one) with its work folder
``worker``     RecBole's pipeline for one model, resumable from the work folder
``hooks``      the Trainer subclass: timing, the time budget, progress beside the checkpoints
``summary``    ``summary.json`` under a lock: rows, protocol, runs
``report``     ``summary.md`` and the plots, from summary.json alone
=============  ===============================================================================
"""
from .entries import DEFAULT_MODELS, ModelEntry, apply_model_configs, parse_models, safe_name
from .run import DEFAULT_OUT, compare
from .protocol import METRIC_KEYS

__all__ = ["DEFAULT_MODELS", "DEFAULT_OUT", "METRIC_KEYS", "ModelEntry", "parse_models", "apply_model_configs",
           "safe_name", "compare", "main", "render_markdown", "plot_summary"]


def __getattr__(name):
    # the command line and the report are loaded on use, so that
    # ``python -m recbole_lru.compare.report`` does not find its module imported already
    if name == "main":
        from .cli import main

        return main
    if name in ("render_markdown", "plot_summary"):
        from . import report

        return getattr(report, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
