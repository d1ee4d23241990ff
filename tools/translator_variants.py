"""Choose the translator's input and shape by measurement: train several variants on the same documents and
samples, and score each the same way.

Every variant learns from the first passage of PopQA dev items 101..100+L (their augmentation samples are
written once and cached in --work), with the same held-out documents, then is scored on:
- held-out loss (the held-out documents' sample loss through their written adapters) beside no adapter;
- fictional facts (tools/data/fictional.jsonl: 20 invented documents inserted with the variant's adapters,
  40 questions, prag, k=1, short answers; accuracy = the answer found in the output);
- PopQA items 1..N (their passages translated, k=3): EM and F1 of prag and combine beside closed-book and
  icl (the passages in context, no adapter) on the same items and the same retrieval.

Resumable: each finished variant's figures are cached in --work/variants.json, its translator in
--work/<variant>.translator (tools/bench_translate.py --translator takes it).

    python tools/translator_variants.py --learn-items 64 --epochs 2 \\
        --variant base: --variant lexical:lexical=4 --variant lexical8:lexical=4,layers=8
"""
from __future__ import annotations

import argparse
import json
import pickle
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from paramdb import ParamDB, evaluation
from paramdb.engine import translator_blob as translators
from paramdb.knowledge.augment import build_samples
from paramdb.knowledge.distill import DistillDoc, DistillSettings, provenance, train_translator
from paramdb.knowledge.translator import TranslatorSettings, parse_settings

HERE = Path(__file__).parent
DATA = HERE / "data" / "eval" / "popqa_dev.jsonl"
FICTIONAL = HERE / "data" / "fictional.jsonl"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_variant(text: str) -> tuple[str, dict]:
    """"name:key=value,key=value" -> (name, TranslatorSettings overrides)."""
    name, _, rest = text.partition(":")
    return name, parse_settings(filter(None, rest.split(",")))


def samples_for(db, texts: list[str], path: Path) -> list:
    done = pickle.loads(path.read_bytes()) if path.exists() else []
    for i in range(len(done), len(texts), 8):
        done += build_samples(db.handle.models.lm, texts[i:i + 8], db.config.augment)
        path.write_bytes(pickle.dumps(done))
        log(f"  samples {len(done)}/{len(texts)}")
    return done


def answer(db, questions: list[str], k: int, mode: str = "prag") -> list[str]:
    return [a.text for a in db.generate_batch(questions, k=k, mode=mode)]


def popqa_scores(texts: list[str], items, prefix: str) -> dict:
    return {f"{prefix}_em": float(np.mean([evaluation.em_in_output(t, it.answers) for t, it in zip(texts, items)])),
            f"{prefix}_f1": float(np.mean([evaluation.token_f1(t, it.answers) for t, it in zip(texts, items)]))}


def score_variant(base: ParamDB, translator, fict, popqa_items, popqa_docs, work: Path, name: str, k: int) -> dict:
    out = {}
    for label, docs in (("fictional", [{"id": f["id"], "text": f["text"]} for f in fict]), ("popqa", popqa_docs)):
        path = work / f"{name}_{label}.store"
        shutil.rmtree(path, ignore_errors=True)
        with ParamDB.open(path, create=True, model=base.handle.models.lm, embedder=base.handle.models.embedder) as db:
            translators.save(db.handle.store.blobs, translator, db.config.model_fingerprint, provenance([], "context"))
            t0 = time.perf_counter()
            db.insert(docs, parameterize="translate")
            out[f"{label}_translate_s_per_doc"] = (time.perf_counter() - t0) / len(docs)
            if label == "fictional":
                qs = [(q["q"], q["a"]) for f in fict for q in f["questions"]]
                texts = answer(db, [q for q, _ in qs], 1)
                out["fictional_accuracy"] = float(np.mean([evaluation.em_in_output(t, a) for t, (_, a) in
                                                           zip(texts, qs)]))
            else:
                questions = [it.question for it in popqa_items]
                out |= popqa_scores(answer(db, questions, k), popqa_items, "popqa")
                out |= popqa_scores(answer(db, questions, k, "combine"), popqa_items, "popqa_combine")
                out |= popqa_scores(answer(db, questions, k, "icl"), popqa_items, "popqa_icl")  # no adapter
        shutil.rmtree(path, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--learn-items", type=int, default=64)
    ap.add_argument("--items", type=int, default=20, help="PopQA items 1..N answered")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("-k", type=int, default=3)
    ap.add_argument("--variant", action="append", required=True, help="name:key=value,... (TranslatorSettings)")
    ap.add_argument("--work", default="/tmp/translator-variants")
    args = ap.parse_args()
    torch.set_num_threads(2)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    items = evaluation.load_items(DATA)
    learn = [it.passages[0].strip() for it in items[100:100 + args.learn_items]]
    popqa_items = items[:args.items]
    popqa_docs = evaluation.corpus(popqa_items, False)
    fict = [json.loads(line) for line in FICTIONAL.read_text().splitlines() if line.strip()]
    results_path = work / "variants.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    with ParamDB.open(work / "base.store", create=True) as base:
        samples = samples_for(base, learn, work / f"samples_{len(learn)}.pkl")
        docs = [DistillDoc(f"p{i}", t, s) for i, (t, s) in enumerate(zip(learn, samples))]
        if "closed" not in results:
            texts = [a.text for a in base.generate_batch([it.question for it in popqa_items], mode="closed")]
            results["closed"] = popqa_scores(texts, popqa_items, "popqa")
            results_path.write_text(json.dumps(results, indent=2))
        for spec in args.variant:
            name, overrides = parse_variant(spec)
            key = f"{name}_L{len(learn)}_e{args.epochs}"
            if key in results:
                continue
            ts = TranslatorSettings(rank=base.config.training.rank, **overrides)
            log(f"variant {key}: {ts}")
            t0 = time.perf_counter()
            model, report = train_translator(base.handle.models.lm, docs, ts, DistillSettings(epochs=args.epochs, lr=args.lr),
                                    base.config.training,
                                    lambda e: log(f"  {e}") if e["event"] == "epoch" else None)
            row = {"settings": ts.to_json(), "params": model.n_params(), "seconds_per_doc":
                   (time.perf_counter() - t0) / len(docs), "base_loss": report.base_loss,
                   "held_out_loss": report.held_out_loss, "epochs": report.epochs}
            prov = provenance([d.key for d in docs], "context")
            prov.held_out_loss, prov.base_loss = report.held_out_loss, report.base_loss
            (work / f"{key}.translator").write_bytes(translators.encode(model, base.config.model_fingerprint, prov))
            row |= score_variant(base, model, fict, popqa_items, popqa_docs, work, key, args.k)
            results[key] = row
            results_path.write_text(json.dumps(results, indent=2))
            log(f"  {key}: {json.dumps({k: v for k, v in row.items() if k not in ('epochs', 'settings')})}")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
