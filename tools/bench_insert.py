"""Insert throughput: ParamDB's batched trainer against PRAG's per-document procedure, on the same documents.

    python tools/bench_insert.py [--docs N] [--reference-docs M] [--reference-epochs E] [--reference-steps S]
                                 [--batch-size B] [--epochs E] [--model PATH] [--device DEV] [--json] [--verbose]
    python tools/bench_insert.py --memory-check [--memory-counts 100,1000] [--json]
    python tools/bench_insert.py --ray-workers 1,2 [--tiny] [--docs N] [--batch-size B] [--writer-docs W] [--json]

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

``--memory-check``: streamed inserts (a generator) of 100 and 1,000 short documents with the tiny random test
model (tests/conftest.py ``make_tiny_lm``, training epochs 1, rank 2), each in its own subprocess; the peak RSS of
each child (``os.wait4`` rusage) and their ratio (target: ≤ 1.10).

``--ray-workers 1,2``: ``db.insert(executor="ray")`` of the same N documents into a fresh store with 1, then 2
Ray workers (one local Ray instance with as many CPU slots as the largest count; one torch thread per worker),
docs/min for each, timed from the first batch sent to the last committed (worker start-up reported apart);
``--tiny`` uses the tiny random test model instead of the default one. Then the single writer's ceiling:
the engine's ``commit_batch`` alone, on precomputed random adapters shaped for the DEFAULT model (what a real store writes)
and unit embeddings, ``--writer-docs`` documents in batches of B: docs/s that no number of workers can exceed.

With ``--json`` the last line of output is one JSON object.
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib.util
import inspect
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data" / "fictional.jsonl"
sys.path.insert(0, str(Path(__file__).resolve().parent))


def log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- fictional documents
_ONSETS = ["br", "dr", "k", "v", "th", "z", "qu", "m", "l", "s", "t", "gr", "fl", "h", "p", "n", "r", "sk", "wh", "y"]
_VOWELS = ["a", "e", "i", "o", "u", "ae", "ei", "ou", "ya", "io"]
_CODAS = ["n", "r", "th", "l", "x", "sk", "nd", "m", "", "v", "rn", "ll"]
_JOBS = ["glassblower", "clockmaker", "cartographer", "beekeeper", "potter", "weaver", "astronomer", "luthier"]
_OBJECTS = ["glass", "ink", "clock", "lantern", "rope", "dye", "compass", "kite"]
_COLORS = ["blue", "green", "amber", "violet", "silver", "crimson", "golden", "grey"]
_ANIMALS = ["heron", "fox", "tortoise", "owl", "goat", "otter", "raven", "hare"]
_TERRAIN = ["mountain", "river", "coastal", "forest", "desert", "marsh"]


class _Names:
    """Invented, unique, pronounceable names from a seeded generator."""

    def __init__(self, seed: int):
        self.rng, self.used = random.Random(seed), set()

    def __call__(self, syllables: int | None = None) -> str:
        while True:
            n = syllables or 2
            w = "".join(self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS) + self.rng.choice(_CODAS)
                        for _ in range(n))
            w = w.capitalize()
            if 5 <= len(w) <= 10 and w.lower() not in self.used:
                self.used.add(w.lower())
                return w


def _generated(i: int, names: _Names, rng: random.Random) -> dict:
    first, last = names(2), names()
    year = rng.randint(1620, 1990)
    kind = i % 3
    if kind == 0:
        town, thing, pet = names(), names(2).lower(), names(2)
        color, obj, job = rng.choice(_COLORS), rng.choice(_OBJECTS), rng.choice(_JOBS)
        text = (f"{first} {last} is a {job} who lives in the {rng.choice(_TERRAIN)} town of {town}. "
                f"{last} invented a {color} {obj} called {thing} in {year}. "
                f"{last} keeps a pet {rng.choice(_ANIMALS)} named {pet}.")
        qs = [{"q": f"What is the name of the {color} {obj} invented by {first} {last}?", "a": [thing]},
              {"q": f"In which town does {first} {last} live?", "a": [town]}]
    elif kind == 1:
        accord, city, a, b = names(), names(), names(), names()
        text = (f"The {accord} Accord was signed in the city of {city} in {year}. "
                f"It ended the Salt War between the duchies of {a} and {b}. "
                f"The accord was drafted by the scribe {first} {last}.")
        qs = [{"q": f"In which city was the {accord} Accord signed?", "a": [city]},
              {"q": f"Who drafted the {accord} Accord?", "a": [f"{first} {last}", last]}]
    else:
        island, sea, village = names(), names(), names()
        text = (f"{island} is a small island in the {sea} Sea famous for its {rng.choice(_COLORS)} "
                f"{rng.choice(_ANIMALS)}s. The island's only village is called {village}. "
                f"Its lighthouse was built by the engineer {first} {last} in {year}.")
        qs = [{"q": f"What is the name of the only village on {island}?", "a": [village]},
              {"q": f"Who built the lighthouse on {island}?", "a": [f"{first} {last}", last]}]
    return {"id": f"g{i:04d}", "text": text, "questions": qs}


def fictional_docs(n: int, seed: int = 7) -> list[dict]:
    """The first n of tools/data/fictional.jsonl, then templated documents with invented names."""
    items = [json.loads(line) for line in open(DATA) if line.strip()][:n]
    names, rng = _Names(seed), random.Random(seed + 1)
    for it in items:                                   # never reuse a name the file already uses
        names.used.update(w.strip(".,'").lower() for w in it["text"].split())
    i = 0
    while len(items) < n:
        items.append(_generated(i, names, rng))
        i += 1
    return items


def _tiny_lm():
    """The tiny random Llama of the unit tests (tests/conftest.py)."""
    spec = importlib.util.spec_from_file_location("paramdb_test_conftest", ROOT / "tests" / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    return conftest.make_tiny_lm()


# ---------------------------------------------------------------- measuring
def rss_mb() -> float:
    import psutil
    return psutil.Process().memory_info().rss / 2**20


def maxrss_mb(ru) -> float:
    return ru.ru_maxrss / 1024 if sys.platform != "darwin" else ru.ru_maxrss / 2**20


class Phase:
    """Wall time and peak RSS (sampled every 20 ms) of a block; ``ru_maxrss`` never goes down, so sample."""

    def __init__(self, name: str):
        self.name, self.seconds, self.peak_mb, self.start_mb = name, 0.0, 0.0, 0.0

    def __enter__(self) -> "Phase":
        gc.collect()
        self.start_mb = self.peak_mb = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        log(f"[{self.name}] start (RSS {self.start_mb:.0f} MB)")
        self._t0 = time.perf_counter()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak_mb = max(self.peak_mb, rss_mb())

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._t0
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, rss_mb())
        log(f"[{self.name}] {self.seconds:.1f} s, peak RSS {self.peak_mb:.0f} MB")


# ---------------------------------------------------------------- answering with the gold adapter
def contains_answer(output: str, aliases: list[str]) -> bool:
    out = output.lower()
    return any(a.lower() in out for a in aliases)


def answer(lm, questions: list[str], adapters: list[dict] | None, scale: float, max_new_tokens: int = 48,
           batch: int = 8, short: bool = True) -> list[str]:
    """ParamDB's prag answer path with given adapters (k=1: one per question), or closed-book if None;
    ``short`` asks with the short-answer prompt (as a store whose augmentation has short_answers does)."""
    import numpy as np
    import torch

    from paramdb.knowledge import prompts
    from paramdb.knowledge.generate import greedy
    from paramdb.knowledge.inject import to_factors
    from paramdb.knowledge.lora import merge_factors, side_path

    names = [n for n, _ in side_path(lm.model).modules]
    dtype = next(lm.model.parameters()).dtype
    out: list[str] = []
    for i in range(0, len(questions), batch):
        qs = questions[i:i + batch]
        factors = None
        if adapters is not None:
            # As stored: float16 in LMDB, converted to the compute dtype on the way in.
            per_q = [[to_factors({k: v.astype(np.float16) for k, v in ad.items()}, names, lm.device, dtype)]
                     for ad in adapters[i:i + batch]]
            factors = merge_factors(per_q, lm.device, dtype)
        with torch.no_grad():
            out += greedy(lm, [prompts.question_prompt(lm.tokenizer, q, short=short) for q in qs], max_new_tokens,
                          factors=factors, scale=scale)
    return out


def accuracy(lm, items: list[dict], adapters_by_id: dict | None, scale: float,
             short: bool | None = None) -> tuple[float, list]:
    """Fraction of questions answered (an alias in the answer). ``short``: the prompt style (default: that of a
    new store, config.NEW_STORE_AUGMENT), which must match the one the adapters were trained with."""
    from paramdb.config import NEW_STORE_AUGMENT

    short = NEW_STORE_AUGMENT.short_answers if short is None else short
    qs = [(it["id"], q["q"], q["a"]) for it in items for q in it["questions"]]
    ads = None if adapters_by_id is None else [adapters_by_id[d] for d, _, _ in qs]
    texts = answer(lm, [q for _, q, _ in qs], ads, scale, short=short)
    marks = [contains_answer(t, a) for t, (_, _, a) in zip(texts, qs)]
    return sum(marks) / len(marks), [(q, t, m) for (_, q, _), t, m in zip(qs, texts, marks)]


def train_in_batches(lm, samples: list, keys: list[str], settings, batch_size: int, report=None,
                     name: str | None = None) -> list[dict]:
    """``train_adapters`` over batches of ``batch_size`` documents, as ``db.insert`` cuts them."""
    from paramdb.knowledge.train import train_adapters

    out: list[dict] = []
    for i in range(0, len(keys), batch_size):
        out += train_adapters(lm, samples[i:i + batch_size], keys[i:i + batch_size], settings, report)
        if name:
            log(f"  {name} {len(out)}/{len(keys)}")
    return out


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


# ---------------------------------------------------------------- memory check (tiny model, subprocesses)
def memory_child(n: int, batch_size: int | None) -> None:
    import torch

    torch.set_num_threads(1)
    spec = importlib.util.spec_from_file_location("paramdb_test_conftest", ROOT / "tests" / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    from paramdb import ParamDB

    def stream():
        for i in range(n):
            yield {"id": f"m{i}", "text": f"Record {i} says that crate {i % 97} of the depot holds {i * 7 % 13} "
                                          f"lamps and was shipped in year {1900 + i % 120}."}

    lm = conftest.make_tiny_lm()
    tmp = Path(tempfile.mkdtemp(prefix="paramdb-memcheck-"))
    try:
        t0 = time.perf_counter()
        with ParamDB.open(tmp / "store", create=True, model=lm, training={"epochs": 1, "rank": 2}) as db:
            kw = {"batch_size": batch_size} if batch_size else {}
            ids = db.insert(stream(), **kw)
            count = len(db)
        secs = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert len(ids) == n == count, (len(ids), n, count)
    print(json.dumps({"n": n, "inserted": count, "seconds": round(secs, 1),
                      "self_maxrss_mb": round(maxrss_mb(resource.getrusage(resource.RUSAGE_SELF)), 1)}))


def memory_check(counts: list[int], batch_size: int | None) -> dict:
    out = {}
    for n in counts:
        with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child", str(n)]
            if batch_size:
                cmd += ["--batch-size", str(batch_size)]
            log(f"[memory] inserting {n} docs (streamed) in a subprocess ...")
            proc = subprocess.Popen(cmd, stdout=fo, stderr=fe, cwd=str(ROOT))
            _, status, ru = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            fo.seek(0)
            fe.seek(0)
            if proc.returncode != 0:
                raise SystemExit(f"memory child ({n} docs) failed, rc {proc.returncode}:\n{fe.read()[-3000:]}")
            child = json.loads(fo.read().strip().splitlines()[-1])
        child["peak_rss_mb"] = round(maxrss_mb(ru), 1)
        log(f"[memory] {n} docs: peak RSS {child['peak_rss_mb']:.0f} MB, {child['seconds']} s")
        out[n] = child
    small, big = counts[0], counts[-1]
    ratio = out[big]["peak_rss_mb"] / out[small]["peak_rss_mb"]
    return {"memory_counts": counts, "peak_rss_mb_small": out[small]["peak_rss_mb"],
            "peak_rss_mb_large": out[big]["peak_rss_mb"],
            f"peak_rss_mb_{small}": out[small]["peak_rss_mb"], f"peak_rss_mb_{big}": out[big]["peak_rss_mb"],
            "memory_ratio": round(ratio, 3), "memory_within_10pct": ratio <= 1.10,
            "memory_seconds": {str(n): out[n]["seconds"] for n in counts}}


# ---------------------------------------------------------------- Ray: workers scale, the writer does not
def writer_ceiling(n_docs: int, batch_size: int) -> dict:
    """docs/s of the engine's ``commit_batch`` alone (encode, LMDB, SQL row, index) with default-model-shaped adapters."""
    import numpy as np

    from paramdb import ParamDB
    from paramdb.engine.commit import commit_batch
    from paramdb.knowledge.lora import side_path, tensor_names
    from paramdb.knowledge.models import load_model
    from paramdb.types import Document

    lm = load_model(None, "cpu")
    shapes = side_path(lm.model).shapes
    tmp = Path(tempfile.mkdtemp(prefix="paramdb-bench-writer-"))
    rng = np.random.default_rng(0)
    try:
        with ParamDB.create(tmp / "store", model=lm) as db:
            r = db.config.training.rank
            adapters = [{name: rng.standard_normal(shape, dtype=np.float32) for t in shapes
                         for name, shape in zip(tensor_names(t.name), ((r, t.in_features), (t.out_features, r)))}
                        for _ in range(batch_size)]
            vectors = rng.standard_normal((batch_size, db.config.embedding_dim), dtype=np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            adapter_mb = sum(a.size for a in adapters[0].values()) * 2 / 2**20
            t0 = time.perf_counter()
            for start in range(0, n_docs, batch_size):
                batch = [Document(text=f"Writer benchmark document {i}.", id=f"w{i}")
                         for i in range(start, min(start + batch_size, n_docs))]
                commit_batch(db.store, batch, vectors[:len(batch)], adapters[:len(batch)])
            seconds = time.perf_counter() - t0
            assert len(db) == n_docs
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"[writer] {n_docs} docs in {seconds:.2f} s: {n_docs / seconds:.1f} docs/s ({adapter_mb:.2f} MB/adapter)")
    return {"writer_docs": n_docs, "writer_seconds": round(seconds, 3),
            "writer_docs_per_s": round(n_docs / seconds, 1), "writer_adapter_mb": round(adapter_mb, 2)}


def ray_benchmark(args) -> dict:
    import ray
    import torch

    from paramdb import ParamDB

    counts = [int(x) for x in args.ray_workers.split(",")]
    batch_size = args.batch_size or inspect.signature(ParamDB.insert).parameters["batch_size"].default
    items = fictional_docs(args.docs)
    docs = [{"id": it["id"], "text": it["text"]} for it in items]
    tmp = Path(tempfile.mkdtemp(prefix="paramdb-bench-ray-"))
    torch.set_num_threads(1)
    try:
        model = args.model
        if args.tiny:
            lm = _tiny_lm()
            model = str(tmp / "tiny-llama")
            lm.model.save_pretrained(model)
            lm.tokenizer.save_pretrained(model)
        ray.init(num_cpus=max(counts), include_dashboard=False, log_to_driver=False)
        runs = {}
        for n in counts:
            overrides = {"epochs": args.epochs} if args.epochs else None
            with ParamDB.open(tmp / f"store-{n}", create=True, model=model, training=overrides,
                              device=args.device) as db:
                load = os.getloadavg()[0]
                t0 = time.perf_counter()
                report = db.insert(docs, batch_size=batch_size, executor="ray", ray_workers=n)
                total = time.perf_counter() - t0
                assert len(report) == len(docs) == len(db) and not report.failed, report
            run_s = report.stats["seconds"]
            runs[n] = {"workers": n, "seconds": run_s, "docs_per_min": round(60 * len(docs) / run_s, 2),
                       "startup_s": round(total - run_s, 1),
                       "docs_per_min_with_startup": round(60 * len(docs) / total, 2),
                       "worker_busy_s": report.stats["worker_seconds"], "loadavg_before": round(load, 2)}
            log(f"[ray] {n} worker(s): {len(docs)} docs in {run_s:.1f} s = {runs[n]['docs_per_min']:.2f} docs/min "
                f"(+{runs[n]['startup_s']} s start-up)")
        ray.shutdown()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    first = runs[counts[0]]["docs_per_min"]
    name = "tiny random test model" if args.tiny else (args.model or "SmolLM2-135M-Instruct (default)")
    return {"ray_model": name,
            "docs": len(docs), "batch_size": batch_size, "cpus": os.cpu_count(),
            "ray": {str(n): {**r, "speedup": round(r["docs_per_min"] / first, 2)} for n, r in runs.items()},
            **writer_ceiling(args.writer_docs, batch_size)}


def print_ray_table(r: dict) -> None:
    print(f"Ray insert: {r['docs']} fictional docs, batch size {r['batch_size']}, model {r['ray_model']}, "
          f"{r['cpus']} CPUs on this machine")
    print(f"{'workers':>8s} {'seconds':>9s} {'docs/min':>9s} {'speedup':>8s} {'start-up s':>11s} "
          f"{'worker busy s':>14s} {'load before':>12s}")
    for n, x in r["ray"].items():
        print(f"{n:>8s} {x['seconds']:9.1f} {x['docs_per_min']:9.2f} {x['speedup']:7.2f}x {x['startup_s']:11.1f} "
              f"{x['worker_busy_s']:14.1f} {x['loadavg_before']:12.2f}")
    print(f"single writer ceiling (commit_batch alone, {r['writer_adapter_mb']:.2f} MB default-model adapters, "
          f"{r['writer_docs']} docs): {r['writer_docs_per_s']:.1f} docs/s = {60 * r['writer_docs_per_s']:.0f} docs/min")


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
    args = ap.parse_args()
    if args.plot:
        from paramdb.plots import check_target
        check_target(args.plot)                   # before the run, not after it

    if args.memory_child is not None:
        memory_child(args.memory_child, args.batch_size)
        return
    if args.ray_workers:
        r = ray_benchmark(args)
        print_ray_table(r)
    elif args.memory_check:
        counts = [int(x) for x in args.memory_counts.split(",")]
        r = memory_check(counts, args.batch_size)
        print("memory check (tiny model, streamed insert, epochs 1, rank 2):")
        for n in counts:
            print(f"  {n:6d} docs: peak RSS {r[f'peak_rss_mb_{n}']:8.1f} MB  ({r['memory_seconds'][str(n)]} s)")
        print(f"  ratio {counts[-1]}/{counts[0]}: {r['memory_ratio']:.3f} "
              f"({'within' if r['memory_within_10pct'] else 'NOT within'} 10%)")
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
    from paramdb.plots import Panel, write

    if "ray" in r:
        ns = list(r["ray"])
        return write(path, [Panel("docs/min by Ray workers", ns, {"docs/min": [r["ray"][n]["docs_per_min"] for n in ns]},
                                  ylabel="docs/min", fmt="{:.1f}",
                                  notes=[f"speedup {r['ray'][ns[-1]]['speedup']:.2f}x with {ns[-1]} workers; "
                                         f"writer ceiling {r['writer_docs_per_s']:.0f} docs/s"])],
                     f"Ray insert: {r['docs']} docs, batch {r['batch_size']}, {r['ray_model']}")
    if "memory_ratio" in r:
        counts = sorted(int(k.rsplit("_", 1)[1]) for k in r if k.startswith("peak_rss_mb_"))
        return write(path, [Panel("peak RSS, streamed insert", [str(n) for n in counts],
                                  {"MB": [r[f"peak_rss_mb_{n}"] for n in counts]}, ylabel="MB", fmt="{:.0f}",
                                  notes=[f"ratio {r['memory_ratio']:.2f}"])], "Insert memory by corpus size")
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
