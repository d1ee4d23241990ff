"""Calibrate training settings: injected accuracy and training time per setting, on fictional documents.

    python tools/calibrate_training.py [--docs N] [--model PATH] [--set "stop_loss=0,epochs=10" ...] [--json]

Each ``--set`` is one variant of the store's default TrainSettings (comma-separated field=value overrides).
The documents are bench_insert's fictional ones (invented names, two questions each, closed-book ≈ 0);
augmentation runs once and its samples feed every variant, so only training differs. Per variant: training
seconds per document (batches of 8, as db.insert), mean epochs trained per document (``stop_loss`` may end a
document early), and the fraction of questions answered in ``prag`` mode with the document's own adapter.
How the defaults in paramdb/config.py were chosen; with 48 questions a difference of 2-3 answers is noise.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_insert import accuracy, fictional_docs, log, train_in_batches  # noqa: E402


def parse_overrides(text: str) -> dict:
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        out[name] = json.loads(value)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=24)
    ap.add_argument("--model", default=None)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--set", dest="variants", action="append", default=None,
                    help='overrides of the default TrainSettings, e.g. "stop_loss=0.1,epochs=8"; repeatable')
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from paramdb.config import NEW_STORE_AUGMENT, default_training
    from paramdb.knowledge.augment import build_samples
    from paramdb.knowledge.models import load_model
    from paramdb.knowledge.train import TrainReport

    items = fictional_docs(args.docs)
    texts, keys = [it["text"] for it in items], [it["id"] for it in items]
    lm = load_model(args.model)
    base = default_training(sum(p.numel() for p in lm.model.parameters()))
    samples = build_samples(lm, texts, NEW_STORE_AUGMENT)      # what a new store's insert builds
    results = []
    for text in args.variants or ["stop_loss=0", ""]:
        s = dataclasses.replace(base, **parse_overrides(text))
        report, t0 = TrainReport(), time.perf_counter()
        adapters = train_in_batches(lm, samples, keys, s, args.batch_size, report)
        seconds = time.perf_counter() - t0
        acc, _ = accuracy(lm, items, dict(zip(keys, adapters)), s.scale, NEW_STORE_AUGMENT.short_answers)
        row = {"set": text or "(defaults)", "s_per_doc": round(seconds / len(items), 2),
               "epochs_mean": round(sum(report.epochs) / len(report.epochs), 2), "prag_acc": round(acc, 3)}
        log(json.dumps(row))
        results.append(row)
    print(f"{len(items)} fictional docs, {sum(len(it['questions']) for it in items)} questions, {lm.name}")
    print(f"{'settings':40s} {'s/doc':>7s} {'epochs':>7s} {'acc':>6s}")
    for r in results:
        print(f"{r['set']:40s} {r['s_per_doc']:7.2f} {r['epochs_mean']:7.2f} {r['prag_acc']:6.3f}")
    if args.json:
        print(json.dumps({"docs": len(items), "variants": results}))


if __name__ == "__main__":
    main()
