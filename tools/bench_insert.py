"""Insert throughput: ParamDB's batched trainer against PRAG's per-document procedure, on the same documents.

    python tools/bench_insert.py [--docs N] [--reference-docs M] [--reference-epochs E] [--reference-steps S]
                                 [--batch-size B] [--epochs E] [--model PATH] [--device DEV] [--json] [--verbose]
    python tools/bench_insert.py --memory-check [--memory-counts 100,1000] [--json]
    python tools/bench_insert.py --ray-workers 1,2 [--tiny] [--docs N] [--batch-size B] [--writer-docs W] [--json]
    python tools/bench_insert.py --precision-compare [--docs 24] [--popqa 20] [--bf16-docs 8] [--json]
    python tools/bench_insert.py --precision-peaks [--json]

One run, one base model (default SmolLM2-135M-Instruct), N fictional documents (tools/data/fictional.jsonl, then
templated ones with invented names), each with two questions no model can answer unaided. ``build_samples``
runs ONCE on all N documents and its samples feed all three trainers, so augmentation is identical for all and
timed apart. Trainers (tools/prag_reference.py for (a) and (b)):

  (a) PRAG's padding applied to these samples: PRAG's per-document procedure (PEFT per document, batch size 1,
      every sample padded to 3,000 tokens, HF loss over full logits, unload between documents) run on
      ParamDB's samples and settings, not PRAG's own pipeline; timed on the first M documents with E epochs
      (default 1; or only S steps with ``--reference-steps``) and extrapolated linearly to the store's
      configured epochs (mean step time x samples x epochs, plus the per-document wrap/unload/gc overhead once;
      padded to a fixed length every step costs the same); it runs LAST because its several GB of activations
      may stay with the allocator and would inflate later phases' RSS;
  (b) sequential: the same PEFT loop without padding, on all N documents, with the store's per-document
      stopping rule (``stop_loss``), so it is compared with ParamDB like for like;
  (c1) ParamDB alone: ``train_adapters`` one document at a time (batch size 1), same stopping rule: the fair
      "alone" baseline for batching, the same code with nothing to batch;
  (c) ParamDB: ``train_adapters`` on batches of B documents (default: ``ParamDB.insert``'s default batch size),
      exactly what ``db.insert`` runs; then a real ``db.insert`` of the N documents into an empty temporary store;
  (b0), (c0) when the store's training has ``stop_loss`` (unless ``--no-all-epochs``): (b) and (c) again with
      every document trained all epochs, so batching's gain is also shown apart from stopping.

Ratios are always between rows with the same stopping rule: c/b and c/c1 (stopping), c0/b0 (all epochs).
``--tiny`` runs everything on the tiny random test model (tests/conftest.py): a quick check that the
benchmark works, its figures mean nothing.

Throughput ratios use TRAINING time only (augmentation excluded). The end-to-end column adds the shared
augmentation time per document to (a) and (b), and for ParamDB is the real ``db.insert`` (augmentation,
embedding, training and writes). Accuracy: each question asked in ``prag`` mode with k=1 using its gold
document's adapter (round-tripped through float16 as the store keeps it), through ParamDB's answer path
(``merge_factors`` + ``greedy(..., scale=α/r)``); correct if the answer contains an alias (case-insensitive).
Closed-book accuracy (no adapter) is the sanity check that the facts are unknown to the model.

``--precision-compare`` (fp32, today's recipe, against the default precision, with training FLOP/s beside the
matmul peaks, and deferred insert) is tools/bench_precision.py, run from here.

``--memory-check`` (peak RSS of streamed inserts by corpus size) and ``--ray-workers`` (docs/min by Ray workers,
and the single writer's ceiling) are tools/bench_insert_scale.py, run from here; its docstring says what they
measure.

With ``--json`` the last line of output is one JSON object.
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import inspect
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_insert_scale as scale  # noqa: E402
from benchlib import Phase, _tiny_lm, accuracy, fictional_docs, log, maxrss_mb, train_in_batches  # noqa: E402


# ---------------------------------------------------------------- the throughput benchmark
def run_benchmark(args) -> dict:
    import torch

    from paramdb import ParamDB
    from paramdb.knowledge.augment import build_samples
    from paramdb.knowledge.models import load_model
    from paramdb.knowledge.train import TrainReport
    from prag_reference import PRAG_MAX_LENGTH, train_prag_reference, train_sequential

    t_start = time.perf_counter()
    batch_size = args.batch_size or inspect.signature(ParamDB.insert).parameters["batch_size"].default
    items = fictional_docs(args.docs)
    texts, keys = [it["text"] for it in items], [it["id"] for it in items]
    m = max(1, min(args.reference_docs, len(items)))

    lm = _tiny_lm() if args.tiny else load_model(args.model, args.device)
    tmp = Path(tempfile.mkdtemp(prefix="paramdb-bench-insert-"))
    overrides = {"epochs": args.epochs} if args.epochs else None
    try:
        db = ParamDB.create(tmp / "store", model=lm, training=overrides)   # empty: filled by (c') at the end
        s, aug = db.config.training, db.config.augment
        ref_epochs = args.reference_epochs or s.epochs
        log(f"model {lm.name} on {lm.device}, {torch.get_num_threads()} threads; {len(items)} docs; "
            f"training {s}; insert batch size {batch_size}")

        with Phase("augmentation (build_samples, once)") as p_aug:
            samples = build_samples(lm, texts, aug)
        n_samples = [len(x) for x in samples]

        def train_all(settings, name, report=None):
            with Phase(f"{name} train_adapters, batches of {batch_size}") as phase:
                out = train_in_batches(lm, samples, keys, settings, batch_size, report, name)
            return out, phase

        pdb_report = TrainReport()
        pdb_adapters, p_pdb = train_all(s, "(c) ParamDB", pdb_report)
        with Phase("(c1) ParamDB train_adapters, one document at a time") as p_one:
            one_adapters = train_in_batches(lm, samples, keys, s, 1, None, "(c1) ParamDB alone")
        all_epochs = bool(s.stop_loss) and not args.no_all_epochs
        fixed = dataclasses.replace(s, stop_loss=0.0)
        fixed_adapters, p_fixed = train_all(fixed, "(c0) ParamDB fixed epochs") if all_epochs else (None, None)

        with Phase("(b) sequential PEFT, no padding, same stopping rule") as p_seq:
            seq_adapters, seq_stats = train_sequential(lm, samples, keys, s, stop_loss=s.stop_loss,
                                                       progress=lambda d, n: log(f"  sequential {d}/{n}"))
        gc.collect()
        seq0_adapters, p_seq0 = None, None
        if all_epochs:
            with Phase("(b0) sequential PEFT, no padding, all epochs") as p_seq0:
                seq0_adapters, _ = train_sequential(lm, samples, keys, s,
                                                    progress=lambda d, n: log(f"  sequential all epochs {d}/{n}"))
            gc.collect()

        with Phase("(c') ParamDB db.insert, end to end") as p_ins:
            db.insert([{"id": it["id"], "text": it["text"]} for it in items], batch_size=batch_size)
        db.close()

        with Phase("evaluation") as p_eval:
            closed_acc, closed_log = accuracy(lm, items, None, s.scale, aug.short_answers)
            seq_acc, seq_log = accuracy(lm, items, dict(zip(keys, seq_adapters)), s.scale, aug.short_answers)
            pdb_acc, pdb_log = accuracy(lm, items, dict(zip(keys, pdb_adapters)), s.scale, aug.short_answers)
            short = aug.short_answers

            def acc_of(adapters):
                return accuracy(lm, items, dict(zip(keys, adapters)), s.scale, short)[0] if adapters else None
            one_acc, fixed_acc, seq0_acc = acc_of(one_adapters), acc_of(fixed_adapters), acc_of(seq0_adapters)
        if args.verbose:
            for name, lg in (("closed", closed_log), ("sequential", seq_log), ("paramdb", pdb_log)):
                for q, t, ok in lg:
                    log(f"  {name:10s} {'+' if ok else '-'} {q} -> {t[:80]}")

        # Last: padded to 3,000 tokens it needs several GB, which the allocator may keep after it ends, and
        # that would inflate every later phase's RSS.
        steps_note = f", {args.reference_steps} step(s)" if args.reference_steps else ""
        with Phase(f"(a) PRAG's padding applied to these samples, pad {PRAG_MAX_LENGTH}, {m} doc(s) x "
                   f"{ref_epochs} epoch(s)"
                   f"{steps_note}") as p_ref:
            ref_adapters, ref_stats = train_prag_reference(lm, samples[:m], keys[:m], s, epochs=ref_epochs,
                                                           max_steps=args.reference_steps or None,
                                                           progress=lambda d, n: log(f"  reference {d}/{n}"))
        ref_acc = None
        if ref_epochs == s.epochs and not args.reference_steps:      # a complete run: its accuracy means something
            ref_acc, _ = accuracy(lm, items[:m], dict(zip(keys[:m], ref_adapters)), s.scale, aug.short_answers)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    # Per-document seconds. Reference: the per-document wrap/unload/gc overhead once, plus the measured mean
    # step time times the steps the configured epochs take (samples x epochs): linear in epochs.
    ref_est = [(t - st) + st / n * (k * s.epochs)
               for t, st, n, k in zip(ref_stats.seconds, ref_stats.step_seconds, ref_stats.doc_steps,
                                      ref_stats.samples)]
    ref_doc_s = sum(ref_est) / m
    ref_extrapolated = any(n != k * s.epochs for n, k in zip(ref_stats.doc_steps, ref_stats.samples))
    seq_doc_s = p_seq.seconds / len(items)
    pdb_doc_s = p_pdb.seconds / len(items)
    fixed_doc_s = p_fixed.seconds / len(items) if p_fixed else None
    one_doc_s = p_one.seconds / len(items)
    seq0_doc_s = p_seq0.seconds / len(items) if p_seq0 else None
    aug_doc_s = p_aug.seconds / len(items)
    ins_doc_s = p_ins.seconds / len(items)
    dpm = lambda sec: 60.0 / sec if sec > 0 else float("inf")  # noqa: E731
    peak = maxrss_mb(resource.getrusage(resource.RUSAGE_SELF))
    return {
        "model": lm.name, "device": str(lm.device), "threads": torch.get_num_threads(),
        "docs": len(items), "questions": sum(len(it["questions"]) for it in items),
        "samples_per_doc": round(sum(n_samples) / len(n_samples), 2),
        "training": {"rank": s.rank, "alpha": s.alpha, "lr": s.lr, "epochs": s.epochs,
                     "samples_per_step": s.samples_per_step, "max_length": s.max_length,
                     "stop_loss": s.stop_loss},
        "epochs_mean_paramdb": round(sum(pdb_report.epochs) / len(pdb_report.epochs), 2),
        "batch_size": batch_size,
        "timing_basis": "training-only seconds for docs/min and speedups; *_e2e adds the shared augmentation "
                        "time per doc to (a)/(b) and is a real db.insert for ParamDB",
        "augment_s_per_doc": round(aug_doc_s, 3),
        "reference_docs_timed": m, "reference_epochs_timed": ref_epochs,
        "reference_steps_timed": ref_stats.steps, "reference_extrapolated": ref_extrapolated,
        "reference_s_per_step": round(sum(ref_stats.step_seconds) / max(ref_stats.steps, 1), 3),
        "reference_overhead_s_per_doc": round(sum(t - st for t, st in zip(ref_stats.seconds,
                                                                           ref_stats.step_seconds)) / m, 3),
        "reference_pad_to": PRAG_MAX_LENGTH,
        "s_per_doc_reference": round(ref_doc_s, 3), "s_per_doc_sequential": round(seq_doc_s, 3),
        "s_per_doc_paramdb": round(pdb_doc_s, 3), "s_per_doc_paramdb_insert": round(ins_doc_s, 3),
        "docs_per_min_reference": round(dpm(ref_doc_s), 3),
        "docs_per_min_sequential": round(dpm(seq_doc_s), 3),
        "docs_per_min_paramdb": round(dpm(pdb_doc_s), 3),
        "docs_per_min_reference_e2e": round(dpm(ref_doc_s + aug_doc_s), 3),
        "docs_per_min_sequential_e2e": round(dpm(seq_doc_s + aug_doc_s), 3),
        "docs_per_min_paramdb_e2e": round(dpm(ins_doc_s), 3),
        "speedup_vs_reference": round(ref_doc_s / pdb_doc_s, 2),
        # Like for like: (b) and (c) both stop each document with the same rule.
        "speedup_vs_sequential": round(seq_doc_s / pdb_doc_s, 2),
        "sequential_stop_loss": s.stop_loss,
        "epochs_mean_sequential": round(sum(seq_stats.doc_epochs) / len(seq_stats.doc_epochs), 2),
        # (c1): ParamDB's own trainer one document at a time: what batching alone buys over it.
        "s_per_doc_paramdb_batch1": round(one_doc_s, 3),
        "docs_per_min_paramdb_batch1": round(dpm(one_doc_s), 3),
        "speedup_vs_batch1": round(one_doc_s / pdb_doc_s, 2),
        "speedup_batch1_vs_sequential": round(seq_doc_s / one_doc_s, 2),
        "prag_acc_paramdb_batch1": round(one_acc, 3),
        # (c0)/(b0): both trainers without stop_loss (every document all epochs).
        "s_per_doc_paramdb_fixed_epochs": fixed_doc_s and round(fixed_doc_s, 3),
        "s_per_doc_sequential_fixed_epochs": seq0_doc_s and round(seq0_doc_s, 3),
        "speedup_vs_sequential_fixed_epochs": fixed_doc_s and seq0_doc_s and round(seq0_doc_s / fixed_doc_s, 2),
        "prag_acc_paramdb_fixed_epochs": None if fixed_acc is None else round(fixed_acc, 3),
        "prag_acc_sequential_fixed_epochs": None if seq0_acc is None else round(seq0_acc, 3),
        "prag_acc_reference": None if ref_acc is None else round(ref_acc, 3),
        "prag_acc_sequential": round(seq_acc, 3), "prag_acc_paramdb": round(pdb_acc, 3),
        "closed_acc": round(closed_acc, 3),
        "peak_rss_mb": round(peak, 1),
        "peak_rss_mb_reference": round(p_ref.peak_mb), "peak_rss_mb_sequential": round(p_seq.peak_mb),
        "peak_rss_mb_paramdb": round(p_pdb.peak_mb), "peak_rss_mb_paramdb_insert": round(p_ins.peak_mb),
        "peak_rss_mb_phase": {"augment": round(p_aug.peak_mb), "reference": round(p_ref.peak_mb),
                              "sequential": round(p_seq.peak_mb), "paramdb": round(p_pdb.peak_mb),
                              "paramdb_batch1": round(p_one.peak_mb),
                              "sequential_fixed": p_seq0 and round(p_seq0.peak_mb),
                              "paramdb_fixed": p_fixed and round(p_fixed.peak_mb),
                              "paramdb_insert": round(p_ins.peak_mb), "eval": round(p_eval.peak_mb)},
        "reference_steps_per_doc_full": round(sum(ref_stats.samples) * s.epochs / m, 1),
        "total_s": round(time.perf_counter() - t_start, 1),
    }


def print_table(r: dict) -> None:
    t = r["training"]
    print(f"Insert benchmark: {r['docs']} fictional docs ({r['questions']} questions, {r['samples_per_doc']} "
          f"samples/doc), {r['model']} on {r['device']} ({r['threads']} threads)")
    print(f"training: rank {t['rank']}, alpha {t['alpha']}, lr {t['lr']}, {t['epochs']} epochs; "
          f"ParamDB batch size {r['batch_size']}")
    print(f"augmentation (build_samples, run once, same samples for all): {r['augment_s_per_doc']:.2f} s/doc")
    ex = (f"timed {r['reference_docs_timed']} doc x {r['reference_epochs_timed']} epoch "
          f"({r['reference_steps_timed']} steps, {r['reference_s_per_step']:.1f} s/step)"
          + (f", extrapolated linearly to {r['reference_steps_per_doc_full']:g} steps/doc = {t['epochs']} epochs"
             if r["reference_extrapolated"] else ""))
    ph = r["peak_rss_mb_phase"]
    acc = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    nan = float("nan")
    rows = [
        (f"(a) PRAG's padding ({r['reference_pad_to']}) on these", r["s_per_doc_reference"],
         r["docs_per_min_reference"], r["docs_per_min_reference_e2e"], ph["reference"],
         acc(r["prag_acc_reference"]), ex),
        ("(b) sequential PEFT, same stop rule", r["s_per_doc_sequential"], r["docs_per_min_sequential"],
         r["docs_per_min_sequential_e2e"], ph["sequential"], acc(r["prag_acc_sequential"]),
         f"all docs; {r['epochs_mean_sequential']:g} epochs/doc on average"),
        ("(c1) ParamDB, one doc at a time", r["s_per_doc_paramdb_batch1"], r["docs_per_min_paramdb_batch1"],
         nan, ph["paramdb_batch1"], acc(r["prag_acc_paramdb_batch1"]),
         f"--batch-size 1: {r['speedup_batch1_vs_sequential']:.2f}x vs (b)"),
        ("(c) ParamDB train_adapters", r["s_per_doc_paramdb"], r["docs_per_min_paramdb"],
         r["docs_per_min_paramdb_e2e"], ph["paramdb"], acc(r["prag_acc_paramdb"]),
         f"stop_loss {t['stop_loss']:g}: {r['epochs_mean_paramdb']:g} epochs/doc; {r['speedup_vs_sequential']:.2f}x "
         f"vs (b), {r['speedup_vs_batch1']:.2f}x vs (c1)"),
    ]
    if r["s_per_doc_sequential_fixed_epochs"]:
        sd = r["s_per_doc_sequential_fixed_epochs"]
        rows.append(("(b0) sequential PEFT, all epochs", sd, 60.0 / sd, nan, ph["sequential_fixed"],
                     acc(r["prag_acc_sequential_fixed_epochs"]), "no stopping"))
    if r["s_per_doc_paramdb_fixed_epochs"]:
        sd = r["s_per_doc_paramdb_fixed_epochs"]
        ratio = r["speedup_vs_sequential_fixed_epochs"]
        rows.append(("(c0) ParamDB, all epochs (no stop)", sd, 60.0 / sd, nan, ph["paramdb_fixed"],
                     acc(r["prag_acc_paramdb_fixed_epochs"]),
                     f"batching alone: {ratio:.2f}x vs (b0)" if ratio else "no stopping"))
    rows += [
        ("(c') ParamDB db.insert (e2e)", r["s_per_doc_paramdb_insert"], r["docs_per_min_paramdb_e2e"],
         r["docs_per_min_paramdb_e2e"], ph["paramdb_insert"], "", "augment+embed+train+write"),
    ]
    print(f"{'method':34s} {'s/doc':>9s} {'docs/min':>9s} {'docs/min':>9s} {'peak RSS':>9s} {'prag':>6s}")
    print(f"{'':34s} {'(train)':>9s} {'(train)':>9s} {'(e2e)':>9s} {'MB':>9s} {'acc':>6s}")
    for name, sd, dm, de, pk, a, note in rows:
        print(f"{name:34s} {sd:9.2f} {dm:9.2f} {de:9.2f} {pk:9.0f} {a:>6s}  {note}")
    print(f"closed-book accuracy (sanity, should be ~0): {r['closed_acc']:.3f}")
    print(f"speedup of ParamDB (training only): {r['speedup_vs_reference']:.1f}x vs (a) PRAG's padding, "
          f"{r['speedup_vs_sequential']:.2f}x vs (b) sequential with the same stopping rule, "
          f"{r['speedup_vs_batch1']:.2f}x vs (c1) its own trainer one document at a time")
    print(f"e2e: (a)/(b) = training + shared augmentation per doc; (c') = real db.insert. "
          f"Peak RSS per phase (sampled); process peak {r['peak_rss_mb']:.0f} MB; total {r['total_s']:.0f} s")



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=12, help="documents for (b), (c) and db.insert (default 12)")
    ap.add_argument("--reference-docs", type=int, default=1, help="documents the PRAG reference is timed on")
    ap.add_argument("--reference-epochs", type=int, default=1,
                    help="epochs the reference is timed with, extrapolated linearly (0: the configured epochs)")
    ap.add_argument("--reference-steps", type=int, default=0,
                    help="time only this many reference steps per doc and extrapolate (0: the whole epochs)")
    ap.add_argument("--batch-size", type=int, default=None, help="ParamDB batch size (default: insert's default)")
    ap.add_argument("--epochs", type=int, default=None,
                    help="override the store's configured training epochs for ALL methods (for quick trials)")
    ap.add_argument("--model", default=None, help="base model folder or GGUF (default: SmolLM2-135M-Instruct)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--json", action="store_true", help="end with one JSON line")
    ap.add_argument("--verbose", action="store_true", help="print every answer")
    ap.add_argument("--memory-check", action="store_true", help="only the streamed-insert memory check")
    ap.add_argument("--memory-counts", default="100,1000", help="document counts for --memory-check")
    ap.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--ray-workers", default=None, metavar="1,2",
                    help="only the Ray benchmark: docs/min with each number of workers, and the writer's ceiling")
    ap.add_argument("--tiny", action="store_true",
                    help="the tiny random test model (a quick check that the benchmark runs; figures mean nothing)")
    ap.add_argument("--no-all-epochs", action="store_true",
                    help="skip the (b0)/(c0) rows that train every document all epochs")
    ap.add_argument("--writer-docs", type=int, default=128, help="documents the writer ceiling commits")
    ap.add_argument("--plot", metavar="FILE.png", help="also draw the run's figures (needs paramdb[plot])")
    ap.add_argument("--precision-compare", action="store_true",
                    help="only fp32 (the baseline) against the default precision: tools/bench_precision.py")
    ap.add_argument("--precision-peaks", action="store_true",
                    help="only the fp32 and bf16 matmul rates and what precision auto picks here")
    ap.add_argument("--popqa", type=int, default=20, help="--precision-compare: PopQA dev items whose gold "
                                                          "passages are inserted too (0: none)")
    ap.add_argument("--bf16-docs", type=int, default=8,
                    help="--precision-compare: fictional documents also inserted in forced bf16 (0: none)")
    args = ap.parse_args()
    if args.plot:
        from paramdb.plots import check_target
        check_target(args.plot)                   # before the run, not after it

    if args.memory_child is not None:
        scale.memory_child(args.memory_child, args.batch_size)
        return
    if args.precision_peaks:
        import bench_precision

        r = bench_precision.peaks(args.device)
    elif args.precision_compare:
        import bench_precision

        args.docs = 24 if args.docs == ap.get_default("docs") else args.docs
        r = bench_precision.run(args)
        bench_precision.print_table(r)
    elif args.ray_workers:
        r = scale.ray_benchmark(args)
        scale.print_ray_table(r)
    elif args.memory_check:
        counts = [int(x) for x in args.memory_counts.split(",")]
        r = scale.memory_check(counts, args.batch_size)
        scale.print_memory_table(r)
    else:
        r = run_benchmark(args)
        print_table(r)
    if args.json:
        print(json.dumps(r))
    if args.plot:
        log(f"figure: {figure(r, args.plot)}")


def figure(r: dict, path) -> Path:
    """The run's figures: per method for the main benchmark, per worker count for --ray-workers, per
    document count for --memory-check."""
    if "ray" in r or "memory_ratio" in r:
        return scale.figure(r, path)
    from paramdb.plots import Panel, write

    names = ["PRAG\nreference", "sequential", "ParamDB\nall epochs", "ParamDB\ndefault"]
    keys = ["reference", "sequential", "paramdb_fixed_epochs", "paramdb"]
    docs_min = [60 / r[f"s_per_doc_{k}"] if r.get(f"s_per_doc_{k}") else 0.0 for k in keys]
    acc = [r.get(f"prag_acc_{k}") or 0.0 for k in keys]
    rss = [r["peak_rss_mb_phase"].get({"paramdb_fixed_epochs": "paramdb_fixed"}.get(k, k)) or 0.0 for k in keys]
    return write(path, [Panel("training docs/min", names, {"docs/min": docs_min}, ylabel="docs/min (log scale)",
                              fmt="{:.2f}", log=True,
                              notes=[f"ParamDB default: {r['speedup_vs_sequential']}x sequential, "
                                     f"{r['speedup_vs_reference']}x PRAG"]),
                        Panel("prag accuracy", names, {"accuracy": acc}, fmt="{:.3f}", ylim=(0, 1.08),
                              notes=["0 = not measured (reference timed on a few steps)"]),
                        Panel("peak RSS", names, {"MB": rss}, ylabel="MB", fmt="{:.0f}")],
                 f"Insert: {r['docs']} docs, {r['model']}, {r['threads']} threads")


if __name__ == "__main__":
    main()
