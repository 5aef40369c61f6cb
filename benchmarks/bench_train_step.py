"""Training-step cost of the whole-sequence models: the catalogue scoring + cross-entropy options and
the full step, old (plain scoring) vs new (``ce_backend: auto``), measured side by side in one run.

    python benchmarks/bench_train_step.py                    # Video, one thread, results/train_step.json
    python benchmarks/bench_train_step.py --quick --out /tmp/ts.json

Sections, all in one process:
1. GEMM throughput of this machine at the scoring shape (N x D times D x V): numpy (OpenBLAS) and
   torch (MKL) in each layout; the best fp32 figure is the yardstick.
2. Scoring + CE forward+backward (wrt h, the item embedding and, for LRURec, the item bias), one
   option per row: the plain path (today), the plain path in the transposed GEMM layout, the plain
   path under bf16 autocast, and the chunked fused op at several chunk sizes, in fp32 and with
   bf16 products (loss and gradient errors of the bf16 rows against fp32 are recorded); each row's effective GFLOP/s counts the three GEMMs (2 N D V each).
   The plain path and the auto backend are also timed with all cores.
3. Full training step (forward, backward, clipping at 5, AdamW with the model's parameter groups) of
   LRURec and SASRecWS on real training batches of Video (RecBole's own loader: real lengths,
   first-item targets), ``ce_backend`` reference (today) vs auto vs chunked_bf16, interleaved batch by batch;
   SASRecWS also with its packed encoder (``encoder_backend: packed``, the transformer on real positions
   only) under each CE backend, its plain-encoder rows being the old path. Epoch time is *estimated* as
   the mean step time x the loader's steps per epoch; each step is also set against the machine's GEMM
   floor of its catalogue scoring (3 GEMMs of 2 N D V flops at the best fp32 rate of section 1).
   The packed encoder's float32 agreement with the plain one (hidden states, loss, gradient; dropout off)
   on the same batches is recorded beside its timings.

Timings on one thread are process CPU seconds (robust to waiting for a core on a shared machine);
all-core timings are wall seconds. Every figure is a median over repeats, taken round-robin.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from recbole_lru.ops.linear_ce import (  # noqa: E402
    linear_cross_entropy, linear_cross_entropy_chunked, linear_cross_entropy_reference, resolve_backend,
)
from recbole_lru.provenance import atomic_write_json, git_info, machine_info  # noqa: E402

VIDEO = "amazon-video-games"
STEP_BACKENDS = ("reference", "auto", "chunked_bf16")  # the first is today's path
# the training-step rows per model: name -> (ce_backend, SASRecWS encoder_backend); the first row is today's
# path, and the plain-encoder rows keep the names they had before the packed encoder existed
STEP_VARIANTS = {
    "LRURec": {b: (b, None) for b in STEP_BACKENDS},
    "SASRecWS": {**{b: (b, "plain") for b in STEP_BACKENDS},
                 **{f"packed+{b}": (b, "packed") for b in STEP_BACKENDS}},
}


def log(msg):
    print(f"[train_step {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def timed(fn, wall):
    """Seconds of one call: wall clock, or this process's CPU time."""
    clock = time.perf_counter if wall else time.process_time
    t0 = clock()
    fn()
    return clock() - t0


def race(fns: dict, repeats: int, wall: bool = False) -> dict:
    """Median seconds of each callable, called round-robin (one warm-up call each)."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed(fn, wall))
    return {name: statistics.median(ts) for name, ts in times.items()}


# ------------------------------------------------------------------------------------------ data
def load_video(data_path, quick):
    """(config, dataset, train batches, steps per epoch) from RecBole's own pipeline on Video, or None
    when the file is missing."""
    if not os.path.exists(os.path.join(data_path, VIDEO, f"{VIDEO}.inter")):
        return None
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation

    import recbole_lru

    config = Config(model=recbole_lru.LRURec, dataset=VIDEO, config_dict={
        "data_path": data_path, "show_progress": False, "save_dataset": False, "save_dataloaders": False,
        "seed": 2020, "device": "cpu",
    })
    dataset = create_dataset(config)
    train, _, _ = data_preparation(config, dataset)
    return config, dataset, list(train), len(train)


def synthetic_video(n_batches, seed=0):
    """Stand-in batches at the Video shape when the file is missing: 23,716 ids, length 50,
    geometric lengths averaging ~9.3 (the whole histories' mean)."""
    from recbole.data.interaction import Interaction

    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(n_batches):
        lens = torch.as_tensor(np.minimum(1 + rng.geometric(1 / 8.3, 128), 50))
        seq = torch.randint(1, 23716, (128, 50), generator=g)
        seq[torch.arange(50) >= lens[:, None]] = 0
        batches.append(Interaction({"item_id_list": seq, "item_length": lens,
                                    "item_id": torch.randint(1, 23716, (128,), generator=g)}))
    return batches


def build(name, video, n_items, ce_backend, encoder_backend=None):
    """The model as RecBole's pipeline would build it (real Config; the Video dataset when loaded)."""
    from recbole.config import Config

    import recbole_lru

    cls = getattr(recbole_lru, name)
    overrides = {"ce_backend": ce_backend, "device": "cpu", "seed": 2020}
    if encoder_backend is not None:
        overrides["encoder_backend"] = encoder_backend
    if video is not None:
        config = Config(model=cls, dataset=VIDEO, config_dict=dict(overrides, data_path=video[0]["data_path"]))
        dataset = video[1]
    else:  # the Video shape without its file: only the catalogue size is read from a dataset
        config = Config(model=cls, dataset="ml-100k", config_dict=dict(overrides, MAX_ITEM_LIST_LENGTH=50))
        dataset = type("Catalogue", (), {"num": lambda self, field: n_items})()
    torch.manual_seed(0)
    model = cls(config, dataset)
    opt = torch.optim.AdamW(model.optimizer_param_groups(config["weight_decay"]), lr=config["learning_rate"])
    return model, opt, config["clip_grad_norm"]


def train_step(model, opt, clip, batch):
    opt.zero_grad(set_to_none=True)
    loss = model.calculate_loss(batch)
    loss.backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), **clip)
    opt.step()


def scored_positions(model, batch):
    """N: the positions a whole-sequence CE loss scores in this batch (next-item + first-item targets)."""
    lens = batch["item_length"]
    n = int(lens.sum())
    if getattr(model, "first_item_target", False):
        n += int((lens < model.max_seq_length).sum())
    return n


# ------------------------------------------------------------------------------------------ sections
def gemm_section(N, D, V, repeats):
    g = torch.Generator().manual_seed(0)
    h, E = torch.randn(N, D, generator=g), torch.randn(V, D, generator=g)
    hn, En, Etn = h.numpy(), E.numpy(), np.ascontiguousarray(E.numpy().T)
    Et = E.t().contiguous()
    secs = race({
        "numpy h @ E.T": lambda: hn @ En.T, "numpy h @ Et (contiguous)": lambda: hn @ Etn,
        "numpy E @ h.T": lambda: En @ hn.T, "torch h @ E.t()": lambda: h @ E.t(),
        "torch h @ Et (contiguous)": lambda: h @ Et, "torch E @ h.t()": lambda: E @ h.t(),
        "torch bf16 h @ E.t()": (lambda hb=h.bfloat16(), Eb=E.bfloat16(): hb @ Eb.t()),
    }, repeats)
    flop = 2 * N * D * V
    rows = {k: {"seconds": s, "gflops": flop / s / 1e9} for k, s in secs.items()}
    fp32 = {k: v for k, v in rows.items() if "bf16" not in k}
    best = max(fp32, key=lambda k: fp32[k]["gflops"])
    return {"shape": [N, D, V], "rows": rows, "best_fp32": best, "best_fp32_gflops": rows[best]["gflops"],
            "bf16_gflops": rows["torch bf16 h @ E.t()"]["gflops"]}


def scoring_options(N, D, V, bias, chunks):
    """name -> callable running one scoring + CE forward+backward at (N, D, V)."""
    g = torch.Generator().manual_seed(1)
    h = (torch.randn(N, D, generator=g) * 0.5).requires_grad_()
    E = (torch.randn(V, D, generator=g) * 0.05).requires_grad_()
    b = (torch.randn(V, generator=g) * 0.1).requires_grad_() if bias else None
    target = torch.randint(1, V, (N,), generator=g)
    leaves = [t for t in (h, E, b) if t is not None]

    def run(loss_fn):
        def fn():
            for t in leaves:
                t.grad = None
            loss_fn().backward()
        return fn

    def transposed():  # logits from E @ h.T (MKL's fast layout), read back as (N, V)
        s = E @ h.t() if b is None else torch.addmm(b.unsqueeze(1), E, h.t())
        return torch.nn.functional.cross_entropy(s.t(), target)

    def autocast_bf16():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return linear_cross_entropy_reference(h, E, target, b)

    opts = {"reference (plain, today)": run(lambda: linear_cross_entropy_reference(h, E, target, b)),
            "plain, E @ h.T layout": run(transposed),
            "plain, bf16 autocast": run(autocast_bf16)}
    for c in chunks:
        opts[f"chunked C={c}"] = run(lambda c=c: linear_cross_entropy_chunked(h, E, target, b, chunk_size=c))
    for c in chunks:
        opts[f"chunked bf16 C={c}"] = run(lambda c=c: linear_cross_entropy_chunked(
            h, E, target, b, chunk_size=c, matmul_dtype=torch.bfloat16))
    opts["chunked_bf16 (backend)"] = run(lambda: linear_cross_entropy(h, E, target, b, backend="chunked_bf16"))
    opts["auto"] = run(lambda: linear_cross_entropy(h, E, target, b))

    def error_of(loss_fn):  # loss and gradient error of an option against fp32 reference
        out = []
        for fn in (lambda: linear_cross_entropy_reference(h, E, target, b), loss_fn):
            for t in leaves:
                t.grad = None
            loss = fn()
            loss.backward()
            out.append([loss.detach().float()] + [t.grad.float().clone() for t in leaves])
        rel = [((x - y).norm() / y.norm().clamp(min=1e-30)).item() for x, y in zip(out[1], out[0])]
        return {"loss_rel_err": rel[0], "grad_rel_err": dict(zip(["h", "E", "b"], rel[1:]))}

    errors = {"plain, bf16 autocast": error_of(autocast_bf16),
              "chunked": error_of(lambda: linear_cross_entropy(h, E, target, b, backend="chunked")),
              "chunked_bf16": error_of(lambda: linear_cross_entropy(h, E, target, b, backend="chunked_bf16"))}
    return opts, errors


def scoring_section(N, D, V, repeats, chunks, gemm):
    out = {}
    for tag, bias in (("LRURec (item bias)", True), ("SASRecWS / LinRec (no bias)", False)):
        opts, errors = scoring_options(N, D, V, bias, chunks)
        secs = race(opts, repeats)
        base = secs["reference (plain, today)"]
        flop = 3 * 2 * N * D * V
        # yardstick: the machine's best fp32 GEMM of this shape; rows with bf16 products also against
        # torch's bf16 GEMM of the same shape
        rows = {k: {"seconds": s, "speedup_vs_reference": base / s, "gflops": flop / s / 1e9,
                    "fraction_of_machine_gemm": flop / s / 1e9 / gemm["best_fp32_gflops"],
                    **({"fraction_of_bf16_gemm": flop / s / 1e9 / gemm["bf16_gflops"]} if "bf16" in k else {})}
                for k, s in secs.items()}
        threads = torch.get_num_threads()
        torch.set_num_threads(os.cpu_count())
        all_cores = race({k: opts[k] for k in ("reference (plain, today)", "auto", "chunked_bf16 (backend)")},
                         repeats, wall=True)
        torch.set_num_threads(threads)
        out[tag] = {"rows": rows, "errors_vs_fp32_reference": errors,
                    "all_cores": {"threads": os.cpu_count(), "wall_seconds": all_cores,
                                  "speedup_vs_reference": {k: all_cores["reference (plain, today)"] / v
                                                           for k, v in all_cores.items()}}}
    return out


def step_section(video, batches, steps_per_epoch, n_items, repeats, gemm):
    out = {}
    for name, variants in STEP_VARIANTS.items():
        built = {row: build(name, video, n_items, *how) for row, how in variants.items()}
        first = built["reference"][0]
        for model, opt, clip in built.values():  # same weights; a warm-up step, not timed
            model.load_state_dict(first.state_dict())
            model.train()
            train_step(model, opt, clip, batches[0])
        times = {backend: [] for backend in built}
        for _ in range(repeats):
            for batch in batches:
                for backend, (model, opt, clip) in built.items():
                    times[backend].append(timed(lambda: train_step(model, opt, clip, batch), wall=False))
        med = {k: statistics.median(v) for k, v in times.items()}
        mean = {k: statistics.fmean(v) for k, v in times.items()}
        n_scored = statistics.fmean(scored_positions(first, b) for b in batches)
        # the step's catalogue scoring (forward + two backward GEMMs) at the machine's best fp32 GEMM rate:
        # a floor under every step here; each row is reported as a multiple of it
        floor = 3 * 2 * n_scored * first.hidden_size * n_items / (gemm["best_fp32_gflops"] * 1e9)
        out[name] = {
            "step_seconds_median": med, "step_seconds_mean": mean,
            "step_ratio_reference_over": {k: med["reference"] / v for k, v in med.items()},
            "epoch_seconds_estimate": {k: v * steps_per_epoch for k, v in mean.items()},
            "epoch_ratio_over_reference_estimate": {k: v / mean["reference"] for k, v in mean.items()},
            "scored_positions_per_batch_mean": n_scored,
            "auto_resolves_to": resolve_backend(torch.device("cpu"), "auto"),
            "variants": {k: {"ce_backend": ce, **({"encoder_backend": enc} if enc else {})}
                         for k, (ce, enc) in variants.items()},
            "scoring_gemm_floor_seconds": floor,
            "step_over_scoring_gemm_floor": {k: v / floor for k, v in med.items()},
        }
    return out


def encoder_equivalence(video, batches, n_items):
    """SASRecWS's packed encoder against the plain one in float32 on the timed batches, dropout off
    (eval): relative error of the hidden states at real positions, of the loss and of the whole
    gradient (all parameters as one vector); float64 equality is the unit tests' job."""
    plain, packed = (build("SASRecWS", video, n_items, "reference", enc)[0] for enc in ("plain", "packed"))
    packed.load_state_dict(plain.state_dict())
    worst = {"hidden_rel_err": 0.0, "loss_rel_err": 0.0, "grad_rel_err": 0.0}
    for batch in batches:
        out = []
        for model in (plain, packed):
            model.eval()
            model.zero_grad(set_to_none=True)
            seq = batch["item_id_list"]
            hidden = model.encode(seq)[seq != 0]
            loss = model.calculate_loss(batch)
            loss.backward()
            out.append((hidden.detach(), loss.detach(), torch.cat([p.grad.flatten() for p in model.parameters()
                                                                    if p.grad is not None])))
        for key, ref, got in zip(worst, *out):
            worst[key] = max(worst[key], ((got - ref).norm() / ref.norm()).item())
    return {"dtype": "float32", "batches": len(batches), "max_over_batches": worst}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-path", default=os.path.join(REPO, "..", "shared", "datasets"))
    p.add_argument("--out", default=os.path.join(REPO, "results", "train_step.json"))
    p.add_argument("--threads", type=int, default=1, help="torch threads for the timed sections (all-core rows aside)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--batches", type=int, default=12, help="real training batches timed per model")
    p.add_argument("--chunks", default="32,64,128,256")
    p.add_argument("--quick", action="store_true", help="tiny repeats: a smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.batches = 2, 2
    torch.set_num_threads(args.threads)
    chunks = [int(c) for c in args.chunks.split(",")]

    log("loading Video through RecBole")
    video = None if args.quick else load_video(os.path.abspath(args.data_path), args.quick)
    n_items = 23716
    if video is not None:
        config, dataset, loader_batches, steps = video
        n_items = dataset.item_num
        idx = np.linspace(0, len(loader_batches) - 2, args.batches).round().astype(int)  # the last batch is short
        batches = [loader_batches[i] for i in idx]
        video = (config, dataset)
        source = f"{VIDEO}: RecBole's training loader (real lengths), {len(batches)} of {steps} batches"
    else:
        batches, steps = synthetic_video(args.batches), 243
        source = "synthetic Video shape (file missing or --quick): geometric lengths, mean ~9.3"
    probe = build("LRURec", video, n_items, "auto")[0]
    N = int(statistics.median(scored_positions(probe, b) for b in batches))
    D = probe.hidden_size
    log(f"scoring shape N={N} D={D} V={n_items}; {source}")

    gemm = gemm_section(N, D, n_items, args.repeats)
    log(f"machine GEMM best fp32: {gemm['best_fp32']} {gemm['best_fp32_gflops']:.1f} GFLOP/s")
    for k, v in gemm["rows"].items():
        print(f"  {k:28s} {v['seconds'] * 1e3:8.1f} ms {v['gflops']:7.1f} GFLOP/s")
    scoring = scoring_section(N, D, n_items, args.repeats, chunks, gemm)
    for tag, sec in scoring.items():
        log(f"scoring + CE forward+backward, {tag}")
        for k, v in sec["rows"].items():
            print(f"  {k:28s} {v['seconds'] * 1e3:8.1f} ms  x{v['speedup_vs_reference']:.2f}  "
                  f"{v['gflops']:6.1f} GFLOP/s = {v['fraction_of_machine_gemm']:.2f} of machine fp32 GEMM"
                  + (f", {v['fraction_of_bf16_gemm']:.2f} of bf16 GEMM" if "fraction_of_bf16_gemm" in v else ""))
        print(f"  errors vs fp32: {sec['errors_vs_fp32_reference']}")
        ac = sec["all_cores"]
        print(f"  all {ac['threads']} cores (wall): " + ", ".join(
            f"{k} {v * 1e3:.1f} ms (x{ac['speedup_vs_reference'][k]:.2f})" for k, v in ac["wall_seconds"].items()))
    steps_out = step_section(video, batches, steps, n_items, 1 if args.quick else max(1, args.repeats // 3), gemm)
    for name, s in steps_out.items():
        log(f"{name} training step (median ms, reference/this, epoch estimate s, epoch this/reference, "
            f"step / scoring GEMM floor {s['scoring_gemm_floor_seconds'] * 1e3:.0f} ms):")
        for k in s["step_seconds_median"]:
            print(f"  {k:22s} {s['step_seconds_median'][k] * 1e3:7.0f} ms  x{s['step_ratio_reference_over'][k]:.2f}  "
                  f"{s['epoch_seconds_estimate'][k]:6.0f} s  {s['epoch_ratio_over_reference_estimate'][k]:.2f}  "
                  f"{s['step_over_scoring_gemm_floor'][k]:.1f}x")
    steps_out["SASRecWS"]["packed_vs_plain_encoder"] = equivalence = encoder_equivalence(video, batches, n_items)
    log(f"SASRecWS packed vs plain encoder, float32, dropout off: {equivalence['max_over_batches']}")

    result = {
        "COMMAND": "OMP_NUM_THREADS=1 python benchmarks/bench_train_step.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(), **git_info(REPO), "threads": args.threads, "repeats": args.repeats,
        "data": source, "steps_per_epoch": steps, "scoring_shape": {"N": N, "D": D, "V": n_items},
        "gemm": gemm, "scoring_ce": scoring, "train_step": steps_out,
        "timing": "one-thread rows: median process CPU seconds; all_cores rows: median wall seconds",
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    atomic_write_json(args.out, result)
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
