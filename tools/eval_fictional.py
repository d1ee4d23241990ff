"""Acceptance check for knowledge injection: fictional documents, questions no model can answer unaided.

Builds a store from tools/data/fictional.jsonl (or --data), asks every question in each mode with k=1, and
prints accuracy (an answer alias appears in the output), EM-in-output and token F1 (PRAG's normalisation,
paramdb.evaluation) and the median answer length in words per mode, scored on ``Answer.text`` (the short
answer), with the accuracy of the whole generation beside it, and top-1 retrieval accuracy.

    python tools/eval_fictional.py [--data FILE] [--docs N] [--store DIR] [--modes prag,icl,closed,combine] [--json]
                                   [--predictions FILE]

``--predictions`` writes one JSONL row per question and mode (mode, id, question, prediction, generation, em,
f1, em_generation), as ``paramdb eval`` does, so short-answer extractions can be compared offline
(tools/eval_shorten.py). Item ids there are "<document id>#<question number>".

With ``--store`` a rerun reuses the documents already inserted there (resumable on a slow machine).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from paramdb import ParamDB
from paramdb.evaluation import em_in_output, token_f1


def contains_answer(output: str, aliases: list[str]) -> bool:
    out = output.lower()
    return any(a.lower() in out for a in aliases)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).parent / "data" / "fictional.jsonl"))
    ap.add_argument("--store", help="store folder (default: a temporary one, removed afterwards)")
    ap.add_argument("--modes", default="closed,icl,prag,combine")
    ap.add_argument("-k", type=int, default=1)
    ap.add_argument("--docs", type=int, default=None, help="only the first N documents (and their questions)")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--short-answers", action="store_true",
                    help="a new store trains and asks for short answers (docs/recipe.md)")
    ap.add_argument("--predictions", help="write every answer as a JSONL row to this file")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    items = [json.loads(line) for line in open(args.data) if line.strip()][:args.docs]
    tmp = None if args.store else tempfile.mkdtemp(prefix="paramdb-eval-")
    store = Path(args.store or tmp) / "store"
    try:
        t0 = time.perf_counter()
        with ParamDB.open(store, create=True,
                          augment={"short_answers": True} if args.short_answers and not store.exists() else None) as db:
            new = [{"id": it["id"], "text": it["text"]} for it in items if it["id"] not in db]
            if new:
                db.insert(new, batch_size=args.batch_size,
                          progress=lambda d, n: print(f"  inserted {d}/{n}", file=sys.stderr))
            insert_s = time.perf_counter() - t0
            qs = [(it["id"], q["q"], q["a"]) for it in items for q in it["questions"]]
            qids = [f"{it['id']}#{n}" for it in items for n in range(len(it["questions"]))]
            pred_out = open(args.predictions, "w") if args.predictions else None
            top1 = sum(db.query(q, k=1)[0].id == doc for doc, q, _ in qs) / len(qs)
            result = {"documents": len(items), "questions": len(qs), "insert_s": round(insert_s, 1),
                      "retrieval_top1": round(top1, 3), "modes": {}}
            for mode in args.modes.split(","):
                t = time.perf_counter()
                answers = []
                for i in range(0, len(qs), 8):
                    answers += db.generate_batch([q for _, q, _ in qs[i:i + 8]], k=args.k, mode=mode)
                acc = sum(contains_answer(a.text, g) for a, (_, _, g) in zip(answers, qs)) / len(qs)
                acc_gen = sum(contains_answer(a.generation, g) for a, (_, _, g) in zip(answers, qs)) / len(qs)
                em = sum(em_in_output(a.text, g) for a, (_, _, g) in zip(answers, qs)) / len(qs)
                f1 = sum(token_f1(a.text, g) for a, (_, _, g) in zip(answers, qs)) / len(qs)
                words = sorted(len(a.text.split()) for a in answers)[len(answers) // 2]
                result["modes"][mode] = {"accuracy": round(acc, 3), "em": round(em, 3), "f1": round(f1, 3),
                                         "median_words": words, "accuracy_generation": round(acc_gen, 3),
                                         "s_per_q": round((time.perf_counter() - t) / len(qs), 3)}
                print(f"{mode:8s} accuracy {acc:.3f} EM {em:.3f} F1 {f1:.3f} median words {words} "
                      f"(whole generation: accuracy {acc_gen:.3f})", file=sys.stderr)
                for qid, a, (_, q, g) in zip(qids, answers, qs):
                    if pred_out:
                        pred_out.write(json.dumps({"mode": mode, "id": qid, "question": q, "prediction": a.text,
                                                   "generation": a.generation, "answers": g,
                                                   "em": float(em_in_output(a.text, g)), "f1": token_f1(a.text, g),
                                                   "em_generation": float(em_in_output(a.generation, g))},
                                                  ensure_ascii=False) + "\n")
                        pred_out.flush()
                    mark = "+" if contains_answer(a.text, g) else "-"
                    print(f"   {mark} {q} -> {a.text[:60]}  [{a.generation[:60]}]", file=sys.stderr)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
