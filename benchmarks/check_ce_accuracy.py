"""Accuracy check of the catalogue-CE backends: the same Video training run (same seed, same batches)
with ``ce_backend`` reference / chunked / chunked_bf16, a fixed number of epochs each, one process
per backend so they can run side by side.

    python benchmarks/check_ce_accuracy.py --backend reference --epochs 3 --out results/ce_accuracy/reference.json
    python benchmarks/check_ce_accuracy.py --report results/ce_accuracy      # one table from the JSON files

Each record holds the training loss and the validation Recall@10 (full ranking, RecBole's evaluation)
after every epoch, the CPU seconds of each epoch with its validation, and the test metrics after the
last epoch (RecBole's own fit loop and the plugin's trainer).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from recbole_lru.provenance import atomic_write_json, git_info, machine_info  # noqa: E402

VIDEO = "amazon-video-games"


def run(args):
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_trainer, init_seed

    import recbole_lru

    torch.set_num_threads(args.threads)
    model_cls = getattr(recbole_lru, args.model)
    config = Config(model=model_cls, dataset=args.dataset, config_dict={
        "data_path": args.data_path, "ce_backend": args.backend, "seed": args.seed, "epochs": args.epochs,
        "show_progress": False, "save_dataset": False, "save_dataloaders": False, "device": "cpu",
        "metrics": ["Recall", "NDCG"], "topk": [10], "valid_metric": "Recall@10", "eval_batch_size": 2048,
        "checkpoint_dir": os.path.join(args.workdir, "saved"),
    })
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = model_cls(config, train._dataset).to(config["device"])
    trainer_cls = getattr(model_cls, "TRAINER_CLASS", None) or get_trainer(config["MODEL_TYPE"], config["model"])
    trainer = trainer_cls(config, model)
    epochs, clock = [], [time.process_time()]

    def after_validation(epoch_idx, valid_score):  # RecBole's fit calls this once per validation
        now = time.process_time()
        epochs.append({"epoch": epoch_idx, "train_loss": float(trainer.train_loss_dict[epoch_idx]),
                       "valid_recall@10": float(valid_score), "cpu_seconds_with_validation": now - clock[-1]})
        clock.append(now)
        print(json.dumps(epochs[-1]), flush=True)

    trainer.fit(train, valid, saved=False, show_progress=False, callback_fn=after_validation)
    test_result = trainer.evaluate(test, load_best_model=False, show_progress=False)
    return {"model": args.model, "dataset": args.dataset, "backend": args.backend, "seed": args.seed, "epochs": epochs,
            "test": {k: float(v) for k, v in test_result.items()}}


def report(folder):
    rows = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(folder, "*.json")))]
    print("| model | ce_backend | epoch | train loss | valid Recall@10 | CPU s (with validation) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        for e in r["epochs"]:
            print(f"| {r['model']} | {r['backend']} | {e['epoch']} | {e['train_loss']:.4f} | "
                  f"{e['valid_recall@10']:.4f} | {e['cpu_seconds_with_validation']:.0f} |")
    for r in rows:
        print(f"test {r['model']} {r['backend']}: " + ", ".join(f"{k} {v:.4f}" for k, v in r["test"].items()))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backend", choices=["reference", "chunked", "chunked_bf16"])
    p.add_argument("--model", default="LRURec")
    p.add_argument("--dataset", default=VIDEO)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-path", default=os.path.abspath(os.path.join(REPO, "..", "shared", "datasets")))
    p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "recbole-lru-ce-accuracy"),
                   help="working folder for RecBole's log/ and saved/ (outside the checkout)")
    p.add_argument("--out")
    p.add_argument("--report", metavar="FOLDER", help="print one table from the JSON files in FOLDER")
    args = p.parse_args(argv)
    if args.report:
        report(args.report)
        return 0
    if not (args.backend and args.out):
        p.error("--backend and --out are required (or --report FOLDER)")
    os.makedirs(args.workdir, exist_ok=True)
    os.chdir(args.workdir)  # RecBole writes log/ and saved/ into the working directory
    result = run(args)
    result.update({"COMMAND": "OMP_NUM_THREADS=1 python benchmarks/check_ce_accuracy.py " + " ".join(
        sys.argv[1:] if argv is None else argv), "machine": machine_info(), **git_info(REPO)})
    atomic_write_json(os.path.abspath(os.path.join(REPO, args.out)) if not os.path.isabs(args.out) else args.out,
                      result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
