"""Validation curves of harness models side by side: unfinished ones from their progress records,
finished ones from their summary rows.

A harness model that is still training (or was interrupted) keeps ``progress.json`` in its work
folder (``<out>/<dataset>/.work/<entry>/``): the validation curve and the epoch times so far. This
prints them as one Markdown table (epoch by epoch, validation Recall@10 and NDCG@10 per model, best
so far marked) and, for each model, its best epoch so far and mean training seconds per epoch.
Nothing here is a final result: a model that has not early-stopped may still improve.

    python benchmarks/progress_table.py results/video_fair/amazon-video-games/summary.json \
        results/video_fair/in_progress/SASRecWS/progress.json [--out FILE.md]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics


def load(path: str) -> list[tuple[str, dict]]:
    """A work folder's progress.json (one unfinished model), or a summary.json (its finished rows)."""
    with open(path) as fh:
        record = json.load(fh)
    if "models" in record:  # finished rows carry the same curve and epoch times
        return [(name, dict(row, fit_done=True)) for name, row in record["models"].items() if row.get("curve")]
    if "curve" not in record:
        raise SystemExit(f"{path} is neither a harness progress record nor a summary (it has no 'curve')")
    return [(os.path.basename(os.path.dirname(os.path.abspath(path))), record)]


def table(records: list[tuple[str, dict]]) -> str:
    names = [name for name, _ in records]
    by_epoch = [{p["epoch"]: p for p in rec["curve"]} for _, rec in records]
    epochs = sorted(set().union(*by_epoch))
    lines = ["| epoch | " + " | ".join(f"{n} valid Recall@10 | {n} valid NDCG@10" for n in names) + " |",
             "|---|" + "---|---|" * len(names)]
    for e in epochs:
        cells = []
        for points in by_epoch:
            p = points.get(e)
            mark = "**" if p and p.get("is_best") else ""
            cells += [f"{mark}{p['recall@10']:.4f}{mark}" if p else "–", f"{p['ndcg@10']:.4f}" if p else "–"]
        lines.append(f"| {e} | " + " | ".join(cells) + " |")
    lines.append("")
    for name, rec in records:
        best = max(rec["curve"], key=lambda p: p["valid_score"])
        mean = statistics.mean(rec["epoch_seconds"]) if rec.get("epoch_seconds") else float("nan")
        lines.append(f"- {name}: {len(rec['curve'])} epochs so far, best validation Recall@10 "
                     f"{best['recall@10']:.4f} at epoch {best['epoch']}; mean {mean:.0f} s of training per "
                     f"epoch; finished: {'yes' if rec.get('fit_done') else 'no'}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("progress", nargs="+", help="progress.json files of harness work folders, or summary.json files")
    parser.add_argument("--out", default=None, help="also write the table to this file")
    args = parser.parse_args(argv)
    text = table([rec for p in args.progress for rec in load(p)])
    print(text, end="")
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
