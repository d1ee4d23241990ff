"""Calibrate the training recipe: what each variant costs per document and what it injects.

    python tools/calibrate_training.py [--docs N] [--popqa M] [--model PATH] [--set "epochs=6,lr=0.01" ...] [--json]

Each ``--set`` is one variant: comma-separated field=value overrides of the store's default TrainSettings and of
a new store's AugmentSettings (``short_answers``, ``passage_sample``, ...), e.g. ``"short_answers=true,layers=0.5"``.
Augmentation runs once per distinct set of augment overrides and its samples feed every variant that shares them.

Two question sets, the same variants on both:
- fictional: the first N documents of benchlib.fictional_docs (tools/data/fictional.jsonl, then templated ones
  with invented names), two questions each that no model answers unaided; each asked in ``prag`` mode with its
  own document's adapter (k=1). Correct: an alias in the answer (``acc``).
- PopQA (``--popqa M``): the first M items of tools/data/eval/popqa_dev.jsonl; every gold passage of an item is
  trained, and its question is asked with the mean of the item's passages' adapters (gold retrieval, so a
  variant is judged on what its adapters carry, not on what the retriever finds).

Per variant and set: augmentation and training seconds per document (batches of 8, as db.insert), mean epochs
trained per document (``stop_loss`` may end a document early), training tokens per document per epoch, accuracy,
EM-in-output and token F1 (paramdb.evaluation) and the median answer length in words of the whole generations,
and EM and F1 of the short answers copied out of them (knowledge/shorten.py, what ``Answer.text`` holds).
With 48 questions a difference of 2-3 answers is noise; the JSON carries the per-question marks for a paired
comparison.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import answer, contains_answer, fictional_docs, log, train_in_batches  # noqa: E402

POPQA = Path(__file__).parent / "data" / "eval" / "popqa_dev.jsonl"


def parse_overrides(text: str) -> dict:
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        out[name.strip()] = json.loads(value)
    return out


def split_overrides(overrides: dict) -> tuple[dict, dict]:
    """(augment overrides, training overrides); an unknown field name stops the run before any work."""
    from paramdb.knowledge.settings import AugmentSettings, TrainSettings

    aug = {f.name for f in dataclasses.fields(AugmentSettings)}
    train = {f.name for f in dataclasses.fields(TrainSettings)}
    unknown = set(overrides) - aug - train
    if unknown:
        sys.exit(f"unknown setting(s): {', '.join(sorted(unknown))}")
    return ({k: v for k, v in overrides.items() if k in aug}, {k: v for k, v in overrides.items() if k in train})


def question_sets(n_docs: int, n_popqa: int) -> dict[str, dict]:
    """name -> {"texts", "keys", "questions": [(question, aliases, [doc keys])]}."""
    sets = {}
    if n_docs:
        items = fictional_docs(n_docs)
        sets["fictional"] = {"texts": [it["text"] for it in items], "keys": [it["id"] for it in items],
                             "questions": [(q["q"], q["a"], [it["id"]]) for it in items for q in it["questions"]]}
    if n_popqa:
        from paramdb.evaluation import load_items, passage_id

        texts, keys, questions = [], [], []
        for it in load_items(POPQA, n_popqa):
            ids = []
            for p in it.passages:
                pid = passage_id(p)
                if pid not in keys:
                    texts.append(p)
                    keys.append(pid)
                ids.append(pid)
            questions.append((it.question, list(it.answers), ids))
        sets["popqa"] = {"texts": texts, "keys": keys, "questions": questions}
    return sets


def merged(adapters: list[dict]) -> dict:
    """The mean of several adapters as one adapter of their summed rank:
    (1/k)·Σ BᵢAᵢ = [B₁…B_k]/k · [A₁;…;A_k]."""
    import numpy as np

    if len(adapters) == 1:
        return adapters[0]
    out = {}
    for name in adapters[0]:
        parts = [ad[name] for ad in adapters]
        out[name] = (np.concatenate(parts, 0) if name.endswith("lora_A")
                     else np.concatenate(parts, 1) / len(adapters))
    return out


def score(lm, qset: dict, adapters: list[dict], scale: float, short: bool) -> dict:
    """The answers' scores, whole and as the short answers ParamDB copies out of them; ``short``: the prompt
    style the adapters were trained with."""
    from paramdb.knowledge.shorten import shorten

    by_key = dict(zip(qset["keys"], adapters))
    qs = qset["questions"]
    texts = answer(lm, [q for q, _, _ in qs], [merged([by_key[k] for k in ks]) for _, _, ks in qs], scale,
                   short=short)
    return {**scores(texts, qs), "short": scores(shorten(lm, [q for q, _, _ in qs], texts), qs), "n": len(qs)}


def scores(texts: list[str], qs: list) -> dict:
    """Accuracy (an alias in the answer), EM-in-output, token F1 and median words of ``texts``."""
    from paramdb.evaluation import em_in_output, token_f1

    marks = [contains_answer(t, a) for t, (_, a, _) in zip(texts, qs)]
    return {"acc": round(sum(marks) / len(qs), 3),
            "em": round(sum(em_in_output(t, a) for t, (_, a, _) in zip(texts, qs)) / len(qs), 3),
            "f1": round(sum(token_f1(t, a) for t, (_, a, _) in zip(texts, qs)) / len(qs), 3),
            "words": statistics.median(len(t.split()) for t in texts),
            "marks": [int(m) for m in marks], "answers": texts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=24, help="fictional documents (2 questions each; 0: none)")
    ap.add_argument("--popqa", type=int, default=0, help="PopQA dev items (default 0: none)")
    ap.add_argument("--model", default=None)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--set", dest="variants", action="append", default=None,
                    help='overrides of the defaults, e.g. "stop_loss=0.1,epochs=8"; repeatable ("" = the defaults)')
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from paramdb.config import NEW_STORE_AUGMENT, default_training
    from paramdb.knowledge.augment import build_samples
    from paramdb.knowledge.models import load_model
    from paramdb.knowledge.train import TrainReport, _encode

    variants = [(text, *split_overrides(parse_overrides(text))) for text in (args.variants or ["stop_loss=0", ""])]
    sets = question_sets(args.docs, args.popqa)
    lm = load_model(args.model)
    base = default_training(sum(p.numel() for p in lm.model.parameters()))
    samples: dict[tuple, dict[str, tuple[list, float]]] = {}
    results = []
    for text, aug_over, train_over in variants:
        aug = dataclasses.replace(NEW_STORE_AUGMENT, **aug_over)
        s = dataclasses.replace(base, **train_over)
        row = {"set": text or "(defaults)"}
        for name, qset in sets.items():
            key = (name, tuple(sorted(aug_over.items())))
            if key not in samples:
                t0 = time.perf_counter()
                built = build_samples(lm, qset["texts"], aug)
                samples[key] = (built, (time.perf_counter() - t0) / len(qset["texts"]))
            built, aug_s = samples[key]
            report, t0 = TrainReport(), time.perf_counter()
            adapters = train_in_batches(lm, built, qset["keys"], s, args.batch_size, report)
            seconds = time.perf_counter() - t0
            tokens = [sum(len(ids) for ids, _ in _encode(lm.tokenizer, d, s.max_length)) for d in built]
            row[name] = {"augment_s_per_doc": round(aug_s, 2), "train_s_per_doc": round(seconds / len(built), 2),
                         "epochs_mean": round(sum(report.epochs) / len(report.epochs), 2),
                         "tokens_per_doc_epoch": round(sum(tokens) / len(tokens)),
                         **score(lm, qset, adapters, s.scale, aug.short_answers)}
            x = row[name]
            log(json.dumps({k: v for k, v in x.items() if k not in ("marks", "answers", "short")} |
                           {"short_em": x["short"]["em"], "short_f1": x["short"]["f1"], "set": text, "on": name}))
        results.append(row)
    print(f"{lm.name}; " + ", ".join(f"{name}: {len(q['texts'])} docs, {len(q['questions'])} questions"
                                     for name, q in sets.items()))
    print(f"{'settings':44s} {'set':9s} {'aug s':>6s} {'train s':>7s} {'epochs':>6s} {'tok/ep':>6s} "
          f"{'acc':>5s} {'EM':>5s} {'F1':>5s} {'words':>5s} {'short EM':>8s} {'short F1':>8s}")
    for r in results:
        for name in sets:
            x = r[name]
            print(f"{r['set']:44s} {name:9s} {x['augment_s_per_doc']:6.2f} {x['train_s_per_doc']:7.2f} "
                  f"{x['epochs_mean']:6.2f} {x['tokens_per_doc_epoch']:6d} {x['acc']:5.3f} {x['em']:5.3f} "
                  f"{x['f1']:5.3f} {x['words']:5.1f} {x['short']['em']:8.3f} {x['short']['f1']:8.3f}")
    if args.json:
        print(json.dumps({"sets": {n: len(q["questions"]) for n, q in sets.items()}, "variants": results}))


if __name__ == "__main__":
    main()
