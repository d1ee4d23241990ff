"""Seconds of the short-answer pass alone, on saved generations: one question at a time and batched.

    python tools/bench_shorten.py PREDICTIONS.jsonl [--mode prag] [--n 16] [--repeats 3] [--threads 2]

The rows are ``paramdb eval --predictions`` or ``tools/eval_fictional.py --predictions`` output (question and
generation); only ``knowledge.shorten.shorten`` is timed, with the base model loaded once, so two checkouts
can be compared by running this script under each (``PYTHONPATH=CHECKOUT``) on the same file and threads.
Prints one JSON line: medians over every question and repeat.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("predictions")
    ap.add_argument("--mode", default="prag")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    from paramdb.knowledge.models import load_model
    from paramdb.knowledge.shorten import shorten
    torch.set_num_threads(args.threads)
    rows = [json.loads(line) for line in open(args.predictions, encoding="utf-8") if line.strip()]
    rows = [r for r in rows if r["mode"] == args.mode][:args.n]
    qs, gs = [r["question"] for r in rows], [r["generation"] for r in rows]
    lm = load_model()
    shorten(lm, qs[:2], gs[:2])                                   # warm-up
    one, batched = [], []
    for _ in range(args.repeats):
        for q, g in zip(qs, gs):
            t = time.perf_counter()
            shorten(lm, [q], [g])
            one.append(time.perf_counter() - t)
        t = time.perf_counter()
        shorten(lm, qs, gs, batch_size=8)
        batched.append((time.perf_counter() - t) / len(qs))
    print(json.dumps({"questions": len(qs), "threads": args.threads,
                      "one_at_a_time_s": round(statistics.median(one), 4),
                      "batched_8_per_question_s": round(statistics.median(batched), 4)}))


if __name__ == "__main__":
    main()
