"""Our Video numbers next to the LRURec paper's Table 3.

    python benchmarks/paper_table.py [--summary results/amazon-video-games/summary.json]

Reads the comparison harness's summary and writes ``paper_comparison.md`` and
``paper_comparison.json`` beside it: every row's test metrics, the paper's, their ratio and
whether each is within 3% of the paper (or above it).
"""
import argparse
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Yue et al., WSDM 2024, Table 3, Video (the same data as ../shared/datasets/amazon-video-games)
PAPER = {
    "LRURec": {"ndcg@10": 0.06198, "recall@10": 0.11337, "ndcg@20": 0.07547, "recall@20": 0.16705},
    "SASRec": {"ndcg@10": 0.05829, "recall@10": 0.10910},
}
METRICS = ["recall@10", "ndcg@10", "recall@20", "ndcg@20"]
TOLERANCE = 0.03


def paper_model(row_name: str, row: dict) -> str:
    """The paper's row a summary row is measured against (LRURec@label -> LRURec, SASRecWS -> SASRec)."""
    model = row.get("model") or row_name.partition("@")[0].partition(":")[0]
    return "SASRec" if model in ("SASRec", "SASRecWS") else model


def compare_rows(summary: dict) -> dict:
    out = {}
    for name, row in (summary.get("models") or {}).items():
        paper = PAPER.get(paper_model(name, row))
        test = row.get("test") or {}
        if row.get("error") or paper is None or test.get("recall@10") is None:
            continue
        cells = {}
        for m in METRICS:
            if m in paper and test.get(m) is not None:
                r = test[m] / paper[m]
                cells[m] = {"ours": test[m], "paper": paper[m], "ratio": r, "within_3pct": r >= 1 - TOLERANCE}
        hp = row.get("config") or {}
        out[name] = {
            "paper_row": paper_model(name, row),
            "metrics": cells,
            "all_within_3pct": all(c["within_3pct"] for c in cells.values()),
            "hidden_dropout_prob": hp.get("hidden_dropout_prob"),
            "weight_decay": hp.get("weight_decay"),
            "epochs_to_best": row.get("epochs_to_best"),
            "epochs_run": row.get("epochs_run"),
            "stopped_by": row.get("stopped_by"),
        }
    return out


def render(summary: dict, rows: dict) -> str:
    lines = [f"# {summary.get('dataset')}: our test metrics against the LRURec paper's Table 3", "",
             "Ratio = ours / paper; ✓ = within 3% of the paper or above it.", "",
             "| Row | Paper row | dropout | weight decay | " + " | ".join(METRICS) + " | epochs (best/run) |",
             "|---|---|---|---|" + "---|" * len(METRICS) + "---|"]
    for name, r in rows.items():
        cells = []
        for m in METRICS:
            c = r["metrics"].get(m)
            cells.append("–" if c is None else
                         f"{c['ours']:.4f} / {c['paper']:.4f} = {c['ratio']:.3f} {'✓' if c['within_3pct'] else '✗'}")
        lines.append(f"| {name} | {r['paper_row']} | {r['hidden_dropout_prob']} | {r['weight_decay']} | "
                     + " | ".join(cells) + f" | {r['epochs_to_best']}/{r['epochs_run']} ({r['stopped_by']}) |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--summary", default=os.path.join(REPO, "results", "amazon-video-games", "summary.json"))
    args = p.parse_args(argv)
    if not os.path.isfile(args.summary):
        print(f"error: {args.summary} not found; run the Video comparison first "
              f"(results/amazon-video-games/COMMAND.sh)", file=sys.stderr)
        return 2
    with open(args.summary) as fh:
        summary = json.load(fh)
    rows = compare_rows(summary)
    folder = os.path.dirname(os.path.abspath(args.summary))
    with open(os.path.join(folder, "paper_comparison.json"), "w") as fh:
        json.dump({"paper": PAPER, "tolerance": TOLERANCE, "rows": rows}, fh, indent=1)
    text = render(summary, rows)
    with open(os.path.join(folder, "paper_comparison.md"), "w") as fh:
        fh.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
