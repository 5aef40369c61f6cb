"""Our Video numbers next to the LRURec paper's Table 3.

    python benchmarks/paper_table.py [--summary results/amazon-video-games/summary.json] [--summary MORE.json ...]

Reads the comparison harness's summaries (rows of several runs of one dataset, the first file's
folder receiving the output) and writes ``paper_comparison.md`` and ``paper_comparison.json``:
every row's test metrics, the paper's, their ratio and whether each is within 3% of the paper (or
above it); then, per paper model, the row that the paper's own rule selects (the best validation
Recall@10 over every configuration tried) and how it stands.
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


def compare_rows(summary: dict, source: str | None = None) -> dict:
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
            # rows run before the key existed trained next-item targets only
            "first_item_target": bool(hp.get("first_item_target")) if paper_model(name, row) == "LRURec" else None,
            "best_valid_recall@10": (row.get("best_valid") or {}).get("recall@10"),
            "source": source,
            "epochs_to_best": row.get("epochs_to_best"),
            "epochs_run": row.get("epochs_run"),
            "stopped_by": row.get("stopped_by"),
        }
    return out


def select_by_validation(rows: dict) -> dict:
    """Per paper model, the row with the best validation Recall@10 (the paper selects its grid's
    configuration so, then reports that model's test metrics)."""
    best = {}
    for name, r in rows.items():
        v = r.get("best_valid_recall@10")
        if v is None:
            continue
        cur = best.get(r["paper_row"])
        if cur is None or v > rows[cur]["best_valid_recall@10"]:
            best[r["paper_row"]] = name
    return {
        paper: {"row": name, "best_valid_recall@10": rows[name]["best_valid_recall@10"],
                "all_within_3pct": rows[name]["all_within_3pct"],
                "within_3pct": sum(c["within_3pct"] for c in rows[name]["metrics"].values()),
                "of": len(rows[name]["metrics"]),
                "candidates": sum(r["paper_row"] == paper for r in rows.values())}
        for paper, name in best.items()
    }


def _flag(value) -> str:
    return "–" if value is None else ("yes" if value else "no")


def render(summary: dict, rows: dict, selected: dict | None = None) -> str:
    lines = [f"# {summary.get('dataset')}: our test metrics against the LRURec paper's Table 3", "",
             "Ratio = ours / paper; ✓ = within 3% of the paper or above it.", "",
             "| Row | Paper row | dropout | weight decay | first-item target | valid Recall@10 | "
             + " | ".join(METRICS) + " | epochs (best/run) |",
             "|---|---|---|---|---|---|" + "---|" * len(METRICS) + "---|"]
    for name, r in rows.items():
        cells = []
        for m in METRICS:
            c = r["metrics"].get(m)
            cells.append("–" if c is None else
                         f"{c['ours']:.4f} / {c['paper']:.4f} = {c['ratio']:.3f} {'✓' if c['within_3pct'] else '✗'}")
        valid = r.get("best_valid_recall@10")
        lines.append(f"| {name} | {r['paper_row']} | {r['hidden_dropout_prob']} | {r['weight_decay']} | "
                     f"{_flag(r.get('first_item_target'))} | {'–' if valid is None else f'{valid:.4f}'} | "
                     + " | ".join(cells) + f" | {r['epochs_to_best']}/{r['epochs_run']} ({r['stopped_by']}) |")
    if selected:
        lines += ["", "Selected by the paper's rule (best validation Recall@10 over every configuration tried):", ""]
        for paper, sel in selected.items():
            lines.append(f"- {paper}: **{sel['row']}** (validation Recall@10 {sel['best_valid_recall@10']:.4f}, "
                         f"best of {sel['candidates']}): within 3% of the paper (or above) on {sel['within_3pct']} "
                         f"of {sel['of']} metrics.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--summary", action="append",
                   help="a harness summary.json (repeatable; default results/amazon-video-games/summary.json); "
                        "the output goes beside the first")
    args = p.parse_args(argv)
    paths = args.summary or [os.path.join(REPO, "results", "amazon-video-games", "summary.json")]
    rows, summary = {}, None
    for path in paths:
        if not os.path.isfile(path):
            print(f"error: {path} not found; run the Video comparison first "
                  f"(results/amazon-video-games/COMMAND.sh)", file=sys.stderr)
            return 2
        with open(path) as fh:
            one = json.load(fh)
        summary = summary or one
        source = os.path.relpath(os.path.abspath(path), REPO)
        for name, r in compare_rows(one, source).items():
            if name in rows:
                print(f"error: row {name!r} appears in two summaries ({rows[name]['source']} and {source}); "
                      f"give each run its own MODEL@label", file=sys.stderr)
                return 2
            rows[name] = r
    selected = select_by_validation(rows)
    folder = os.path.dirname(os.path.abspath(paths[0]))
    with open(os.path.join(folder, "paper_comparison.json"), "w") as fh:
        json.dump({"paper": PAPER, "tolerance": TOLERANCE, "sources": [os.path.relpath(os.path.abspath(x), REPO)
                                                                       for x in paths],
                   "rows": rows, "selected": selected}, fh, indent=1)
    text = render(summary, rows, selected)
    with open(os.path.join(folder, "paper_comparison.md"), "w") as fh:
        fh.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
