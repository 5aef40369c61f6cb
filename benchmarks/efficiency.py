"""Efficiency of LRURec next to SASRec, LinRec and GRU4Rec: the claim scripts run side by side in one
process, their headline keys gathered into one ``efficiency.json`` (+ ``efficiency.md``, tables only).

    python benchmarks/efficiency.py                       # every claim, writes results/efficiency.{json,md} + PNGs
    python benchmarks/efficiency.py --quick --out /tmp/x  # tiny sizes, a smoke run
    python benchmarks/efficiency.py --skip long,floor     # leave claims out
    python benchmarks/efficiency.py --skip incremental,long,floor --summaries-only --merge   # re-read the summaries

One script per claim, each also runnable alone (``<out>/efficiency_<claim>.json``):
    eff_train.py        training cost: comparison summaries + one optimizer step, measured
    eff_incremental.py  serving one appended item at a time
    eff_long.py         long sequences: step time and peak memory against N; attention layers alone
    eff_floor.py        the floor of a whole-sequence step, and a profile of LRURec's step

Every timing runs on one thread; times are process CPU seconds (the machine may be shared), wall
seconds beside them. The key names of HEADLINE_KEYS are a contract read by other tools.
"""
from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import eff_floor, eff_incremental, eff_long, eff_train  # noqa: E402
from benchmarks.common import log, result_header, write_result  # noqa: E402
from benchmarks.eff_args import base_parser, finish_args, prepare_process  # noqa: E402
from recbole_lru.provenance import json_safe  # noqa: E402

CLAIMS = {m.CLAIM: m for m in (eff_train, eff_incremental, eff_long, eff_floor)}
HEADLINE_KEYS = [
    "train_epoch_ratio_sasrec_over_lrurec_ml-1m-pos4",
    "time_to_best_ratio_sasrec_over_lrurec_ml-1m-pos4",
    "train_epoch_ratio_sasrec_over_lrurec_video",
    "time_to_best_ratio_sasrec_over_lrurec_video",
    "incremental_throughput_ratio_lrurec_over_sasrec_L50",
    "incremental_throughput_ratio_lrurec_over_sasrec_L200",
    "lrurec_step_time_ratio_L2000_over_L50",
    "linrec_over_softmax_time_N2000",
    "linrec_over_softmax_memory_N2000",
    "lrurec_train_step_over_floor_L200",
]
# (key, comparison, threshold, what it means): the targets the project set itself
TARGETS = [
    ("time_to_best_ratio_sasrec_over_lrurec_ml-1m-pos4", ">=", 3.0, "SASRec time to best / LRURec's"),
    ("time_to_best_ratio_sasrec_over_lrurec_video", ">=", 3.0, "SASRec time to best / LRURec's"),
    ("incremental_throughput_ratio_lrurec_over_sasrec_L50", ">=", 10.0, "incremental throughput vs SASRec, L=50"),
    ("incremental_throughput_ratio_lrurec_over_sasrec_L200", ">=", 40.0, "incremental throughput vs SASRec, L=200"),
    ("lrurec_step_time_ratio_L2000_over_L50", "<=", 1.2, "LRURec step() after 2000 vs 50 items"),
    ("linrec_over_softmax_time_N2000", "<=", 0.33, "LinRec / softmax attention time, N=2000"),
    ("linrec_over_softmax_memory_N2000", "<=", 0.2, "LinRec / softmax attention memory, N=2000"),
    ("lrurec_train_step_over_floor_L200", "<=", 1.5, "LRURec training step / the floor"),
]
META_KEYS = ("command", "machine", "git_commit", "git_dirty", "quick", "notes", "targets", "section_seconds",
             "total_seconds", "details")


def claim_of(key: str) -> str:
    """The claim that measures ``key`` (its name's prefix)."""
    if key.startswith(("train_", "time_to_")):
        return "train"
    if key.startswith(("incremental", "lrurec_step_time")):
        return "incremental"
    if key.startswith(("linrec_", "long_")):
        return "long"
    return "floor"


def check_target(value, op, threshold):
    if value is None:
        return "n/a"
    return "pass" if (value >= threshold if op == ">=" else value <= threshold) else "miss"


def fmt(v, spec="{:.3g}"):
    if v is None:
        return "–"
    return spec.format(v) if isinstance(v, float) else str(v)


def render_markdown(result) -> str:
    m = result["machine"]
    lines = ["# Efficiency: LRURec next to SASRec, LinRec and GRU4Rec", "",
             f"Command: `{result['command']}`  ", f"Commit: `{result.get('git_commit')}` (dirty: {result.get('git_dirty')})  ",
             f"Machine: {m.get('cpu_model')}, {m.get('cpu_count')} cores, torch {m.get('torch')}, 1 thread, load average "
             f"{m.get('load_average')} at start (times are process CPU seconds).", ""]
    if result.get("quick"):
        lines += ["**Quick run (tiny sizes): a smoke test, not measurements.**", ""]
    lines += ["## Targets", "", "| key | value | target | status | meaning |", "|---|---|---|---|---|"]
    for key, op, thr, meaning in TARGETS:
        lines.append(f"| `{key}` | {fmt(result.get(key))} | {op} {thr} | {result['targets'][key]['status']} | {meaning} |")
    lines += ["", "## All keys", "", "| key | value | note |", "|---|---|---|"]
    for key, value in result.items():
        if key not in META_KEYS:
            lines.append(f"| `{key}` | {fmt(value)} | {result['notes'].get(key, '')} |")
    lines.append("")
    for module in CLAIMS.values():
        lines += module.markdown(result["details"], fmt)
    return "\n".join(lines)


def parse_args(argv):
    p = base_parser(__doc__.split("\n")[0])
    for module in CLAIMS.values():
        module.add_arguments(p)
    p.add_argument("--skip", default="", help=f"comma-separated claims to leave out: {','.join(CLAIMS)}")
    p.add_argument("--merge", action="store_true",
                   help="keep the keys of an existing <out>/efficiency.json for every claim this run leaves out")
    p.add_argument("--train-summaries-only", dest="summaries_only", action="store_true", help=argparse_suppress())
    args = p.parse_args(argv)
    finish_args(args, list(CLAIMS.values()))
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if args.skip - set(CLAIMS):
        p.error(f"--skip: unknown claim(s) {sorted(args.skip - set(CLAIMS))}; valid: {','.join(CLAIMS)}")
    return args


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS  # the older spelling of --summaries-only


def merge_previous(path, out, notes, details, ran):
    """Keys, notes and details of the claims this run left out, from the previous file."""
    with open(path) as fh:
        prev = json.load(fh)
    for key, value in prev.items():
        if key not in META_KEYS and claim_of(key) not in ran and key not in out:
            out[key] = value
    for key, note in (prev.get("notes") or {}).items():
        if claim_of(key) not in ran:
            notes.setdefault(key, note)
    for key, value in (prev.get("details") or {}).items():
        details.setdefault(key, value)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    prepare_process()
    if eff_long.run_point(args):
        return 0
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    out, notes, details, seconds = {}, {}, {}, {}
    ran = [name for name in CLAIMS if name not in args.skip]
    header = result_header(__file__, argv)
    for name in ran:
        log("efficiency", f"claim {name}")
        s0 = time.perf_counter()
        CLAIMS[name].run(args, out, notes, details)
        seconds[name] = time.perf_counter() - s0
    json_path = os.path.join(args.out, "efficiency.json")
    if args.merge and os.path.exists(json_path):
        merge_previous(json_path, out, notes, details, ran)
    for key in HEADLINE_KEYS:
        out.setdefault(key, None)
        if out[key] is None and key not in notes:
            notes[key] = f"claim '{claim_of(key)}' left out (--skip)" if claim_of(key) in args.skip else "not measurable in this run"
    notes = {k: v for k, v in notes.items() if out.get(k) is None or "quick" in v or "synthetic" in v
             or k.startswith("lrurec_step_time")}
    result = {**header, "quick": args.quick, **{k: out[k] for k in HEADLINE_KEYS},
              **{k: v for k, v in out.items() if k not in HEADLINE_KEYS}, "notes": notes,
              "targets": {k: {"op": op, "threshold": thr, "status": check_target(out.get(k), op, thr)}
                          for k, op, thr, _ in TARGETS},
              "section_seconds": seconds, "total_seconds": time.perf_counter() - t0, "details": details}
    write_result(json_path, result)
    with open(os.path.join(args.out, "efficiency.md"), "w") as fh:
        fh.write(render_markdown(json_safe(result)))
    log("efficiency", f"wrote {json_path} and efficiency.md in {result['total_seconds']:.0f} s")
    for key in HEADLINE_KEYS:
        log("efficiency", f"  {key}: {fmt(out.get(key))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
