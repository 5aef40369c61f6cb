"""The Markdown table and the two plots of a comparison, made from ``summary.json`` alone.

The harness writes them after every row; to make them again from a summary (after editing the
renderer, or for a summary copied from another machine):

    python -m recbole_lru.compare.report results/<dataset>/summary.json [--no_plots]

writes ``summary.md``, ``valid_ndcg_vs_time.png`` and ``test_metrics.png`` beside it.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys

from ..provenance import atomic_write_text, portable_text
from .optim import DECAY_WEIGHTS_ONLY, optimization_of_row
from .protocol import METRIC_KEYS, protocol_key

__all__ = ["render_markdown", "plot_summary", "write_report", "main"]


def _fmt(value, spec="{:.4f}", none="–"):
    if value is None:
        return none
    try:
        return spec.format(value)
    except (ValueError, TypeError):
        return str(value)


def _fmt_params(n):
    if n is None:
        return "–"
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def _optim_cells(opt: dict | None) -> list[str]:
    """Optimizer, learning rate, weight decay with how it is applied, clipping."""
    if not opt:
        return ["–"] * 4
    decay = "0" if opt["decay"] == "none" and not opt["weight_decay"] else f"{opt['weight_decay']:g} {opt['decay']}"
    if opt["decay"] != "none" and opt.get("decay_params") == DECAY_WEIGHTS_ONLY:
        decay += ", weights only"
    clip = opt.get("clip_grad_norm")
    clip = _fmt(clip.get("max_norm"), "{:g}") if isinstance(clip, dict) else _fmt(clip, "{}")
    return [opt["optimizer"], _fmt(opt["learning_rate"], "{:g}"), decay, clip]


def _optim_signature(opt: dict | None):
    if not opt:
        return None
    return (opt["optimizer"], opt["learning_rate"], opt["weight_decay"], opt["decay"], opt.get("decay_params"),
            json.dumps(opt.get("clip_grad_norm"), sort_keys=True))


def render_markdown(summary: dict) -> str:
    """The summary as a Markdown table (one row per model)."""
    proto = summary.get("protocol") or {}
    lines = [f"# {summary.get('dataset')}: model comparison", ""]
    if proto:
        lines.append(
            f"Leave-one-out, full ranking{', history masked' if proto.get('mask_history') else ''}; "
            f"max length {proto.get('MAX_ITEM_LIST_LENGTH')}; early stopping on {proto.get('valid_metric')} "
            f"(patience {proto.get('stopping_step')}, at most {proto.get('epochs')} epochs"
            + (f" and {proto['time_budget_s']:g} s of training per model" if proto.get("time_budget_s") else "")
            + ")"
            + (f"; every model optimised with {proto['optimizer']}" if proto.get("optimizer") else "")
            + (f"; QUICK run (one epoch, at most {proto.get('quick_users')} users with their last "
               f"{proto.get('quick_items')} interactions)" if proto.get("quick") else "")
            + "."
        )
        if proto.get("shared_overrides"):
            lines.append(f"Shared overrides: `{json.dumps(proto['shared_overrides'])}`.")
        lines.append("")
    head = ["Model", "Regime", "Recall@10", "NDCG@10", "Recall@20", "NDCG@20", "MRR@10", "MRR@20",
            "Optimizer", "lr", "Weight decay", "Clip", "Epochs to best", "s to best", "s/epoch", "Params",
            "Peak MB", "Error"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    other_protocol, signatures = [], {}
    for name, row in summary.get("models", {}).items():
        test = row.get("test") or {}
        opt = optimization_of_row(row)
        err = row.get("error")
        if err:
            err = re.sub(r"\s+", " ", str(err)).replace("|", "\\|")
            err = err if len(err) <= 140 else err[:137] + "..."
        else:
            signatures.setdefault(_optim_signature(opt), []).append(name)
        if proto and protocol_key(row.get("protocol")) != protocol_key(proto):
            other_protocol.append(name)
        epochs = _fmt(row.get("epochs_to_best"), "{}")
        if row.get("stopped_by") == "time_budget":
            epochs += f" of {row.get('epochs_run')}, time budget"
        if row.get("resumed_at_epochs"):
            epochs += f" (resumed after epoch {', '.join(str(e) for e in row['resumed_at_epochs'])})"
        cells = [
            f"{name}*" if name in other_protocol else name,
            row.get("regime") or "–",
            *(_fmt(test.get(k)) for k in METRIC_KEYS),
            *_optim_cells(opt),
            epochs,
            _fmt(row.get("seconds_to_best"), "{:.1f}"),
            _fmt(row.get("seconds_per_epoch"), "{:.2f}"),
            _fmt_params(row.get("params")),
            _fmt(row.get("peak_rss_mb"), "{:.0f}"),
            err or "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if other_protocol:
        lines += ["", "\\* ran under a different protocol (see `protocol` in its summary.json row): "
                  + ", ".join(other_protocol) + "."]
    if len(signatures) > 1:
        lines += ["", "The rows are **not optimised alike** (optimizer, learning rate, weight decay or clipping "
                      "differ): " + "; ".join(", ".join(names) for names in signatures.values())
                  + ". Compare them as such."]
    runs = summary.get("runs") or []
    if runs:
        last = runs[-1]
        machine = last.get("machine") or {}
        lines += ["", f"Last run: `{last.get('command')}` at {last.get('timestamp')}, commit "
                  f"{(last.get('git_commit') or 'unknown')[:12]}{' (dirty)' if last.get('git_dirty') else ''}, "
                  f"{machine.get('platform')}, {machine.get('cpu_count')} CPUs, torch {machine.get('torch')}."]
    return "\n".join(lines) + "\n"


def plot_summary(summary: dict, folder: str) -> list[str]:
    """``valid_ndcg_vs_time.png`` and ``test_metrics.png`` in ``folder``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = summary.get("models", {})
    title = summary.get("dataset")
    paths = []

    fig, ax = plt.subplots(figsize=(8, 5))
    drawn = 0
    for name, row in models.items():
        pts = [c for c in (row.get("curve") or []) if c.get("ndcg@10") is not None]
        if not pts:
            continue
        xs, ys = [c["seconds"] for c in pts], [c["ndcg@10"] for c in pts]
        (line,) = ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.5, label=f"{name} ({row.get('regime')})")
        best = [c for c in pts if c.get("is_best")]
        if best:
            ax.plot([best[-1]["seconds"]], [best[-1]["ndcg@10"]], marker="*", markersize=12,
                    color=line.get_color())
        drawn += 1
    if drawn:
        ax.legend(fontsize=8)
        if max(c["seconds"] for r in models.values() for c in (r.get("curve") or [])) > 0:
            ax.set_xlim(left=0)
    else:
        ax.text(0.5, 0.5, "no validation results", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("wall-clock seconds since the start of training")
    ax.set_ylabel("validation NDCG@10")
    ax.set_title(f"{title}: validation NDCG@10 vs training time (★ best)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = os.path.join(folder, "valid_ndcg_vs_time.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    paths.append(path)

    fig, ax = plt.subplots(figsize=(max(8, 1.4 * len(METRIC_KEYS) + 0.25 * len(models)), 5))
    done = [(n, r) for n, r in models.items() if not r.get("error") and (r.get("test") or {}).get("ndcg@10") is not None]
    if done:
        width = 0.8 / len(done)
        for i, (name, row) in enumerate(done):
            xs = [j + (i - (len(done) - 1) / 2) * width for j in range(len(METRIC_KEYS))]
            ys = [row["test"].get(k) or 0.0 for k in METRIC_KEYS]
            ax.bar(xs, ys, width=width, label=name)
        ax.set_xticks(range(len(METRIC_KEYS)))
        ax.set_xticklabels([k.replace("recall", "Recall").replace("ndcg", "NDCG").replace("mrr", "MRR")
                            for k in METRIC_KEYS])
        ax.legend(fontsize=8, ncol=2 if len(done) > 5 else 1)
    else:
        ax.text(0.5, 0.5, "no test results", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylabel("test score")
    ax.set_title(f"{title}: test metrics (full ranking, leave-one-out)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = os.path.join(folder, "test_metrics.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    paths.append(path)
    return paths


def write_report(summary: dict, folder: str, log=print, plots: bool = True) -> None:
    """``summary.md`` (and the plots) in ``folder``; a plotting problem is reported, never raised,
    so that it cannot lose the rows already written."""
    atomic_write_text(os.path.join(folder, "summary.md"), render_markdown(summary))
    if not plots:
        return
    try:
        plot_summary(summary, folder)
    except Exception as err:  # noqa: BLE001
        log(f"[compare] plotting failed: {type(err).__name__}: {err}")


def _portable_logs(folder: str) -> None:
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        path = os.path.join(folder, name)
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        atomic_write_text(path, portable_text(text))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m recbole_lru.compare.report",
                                description="Write summary.md and the plots beside a harness summary.json.")
    p.add_argument("summary", nargs="+", help="summary.json file(s)")
    p.add_argument("--no_plots", action="store_true", help="only summary.md")
    p.add_argument("--portable_logs", action="store_true",
                   help="also rewrite the machine's paths in logs/ beside it (home as ~/, others relative to "
                        "the working folder), before committing them")
    args = p.parse_args(argv)
    for path in args.summary:
        try:
            with open(path) as fh:
                summary = json.load(fh)
        except (OSError, ValueError) as err:
            print(f"error: cannot read {path}: {err}", file=sys.stderr)
            return 2
        if not isinstance(summary.get("models"), dict):
            print(f"error: {path} is not a harness summary (no 'models' table)", file=sys.stderr)
            return 2
        folder = os.path.dirname(os.path.abspath(path))
        write_report(summary, folder, plots=not args.no_plots)
        if args.portable_logs:
            _portable_logs(os.path.join(folder, "logs"))
        print(f"{os.path.join(folder, 'summary.md')}" + ("" if args.no_plots else " and plots"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
