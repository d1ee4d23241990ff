"""Deferred insert: docs/min of ``insert(parameterize="later")`` and how pending rows answer.

    python tools/bench_defer.py [--model PATH] [--popqa N] [--repeats R] [--no-accuracy] [--json]

Speed: the 24 fictional documents the other benchmarks use (benchlib.fictional_docs: the 20 of
tools/data/fictional.jsonl, then 4 templated ones with invented names, two questions each) and the gold passages of the first N (default 20) PopQA
dev items (tools/data/eval/popqa_dev.jsonl), each set inserted with ``parameterize="later"`` into a new store
with the model and embedder already loaded (so the figure is the insert, not process start-up); the best of R
repeats (default 3) per set. A deferred insert embeds, commits the rows and updates the indexes: no
augmentation, no training, so this is embedding speed.

Knowledge: their 48 questions, k=1, asked of the store whose rows are all pending: ``prag`` then answers
each question from its retrieved passage in the prompt (the rows have no adapter yet), beside ``icl`` on the
same store. Scored as tools/eval_fictional.py does (an answer alias in the short answer).

``deferred_figures()`` is the function tools/bench_insert.py imports to print ``deferred_docs_per_min``.
With ``--json`` the last line of output is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import fictional_docs  # noqa: E402

from paramdb import ParamDB  # noqa: E402
from paramdb.evaluation import corpus, load_items  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"


def contains_answer(output: str, aliases: list[str]) -> bool:
    out = output.lower()
    return any(a.lower() in out for a in aliases)


def _timed_insert(root: Path, docs: list[dict], lm, embedder, name: str) -> tuple[float, ParamDB]:
    db = ParamDB.open(root / name, create=True, model=lm, embedder=embedder)
    t0 = time.perf_counter()
    report = db.insert(docs, parameterize="later")
    seconds = time.perf_counter() - t0
    assert len(report.ids) == len(docs) and db.stats()["adapters"]["pending"] == len(docs)
    return seconds, db


def deferred_figures(model: str | None = None, popqa_items: int = 20, repeats: int = 3, accuracy: bool = True,
                     fictional_n: int = 24,
                     lm=None, embedder=None, log=lambda line: print(line, file=sys.stderr)) -> dict:
    """Figures of a deferred insert (see the module docstring); ``lm``/``embedder``: already loaded ones
    (a LoadedModel, an Embedder) to reuse, else loaded here from ``model`` (default: the packaged model)."""
    fictional = fictional_docs(fictional_n)
    popqa = corpus(load_items(DATA / "eval" / "popqa_dev.jsonl", popqa_items), distractors=False)
    sets = {"fictional": [{"id": it["id"], "text": it["text"]} for it in fictional], "popqa": popqa}
    root = Path(tempfile.mkdtemp(prefix="paramdb-bench-defer-"))
    out: dict = {"sets": {}}
    try:
        with ParamDB.open(root / "load", create=True, model=lm or model, embedder=embedder) as first:
            lm, embedder = first.handle.models.lm, first.handle.models.embedder          # loaded once, shared by every store below
            embedder.embed(["warm up"])
        for name, docs in sets.items():
            times = []
            for r in range(repeats):
                seconds, db = _timed_insert(root, docs, lm, embedder, f"{name}-{r}")
                db.close()
                times.append(seconds)
            best = min(times)
            chars = sum(len(d["text"]) for d in docs)
            out["sets"][name] = {"docs": len(docs), "seconds": round(best, 3),
                                 "docs_per_min": round(len(docs) / best * 60, 1),
                                 "seconds_all_repeats": [round(t, 3) for t in times], "mean_chars": chars // len(docs)}
            log(f"{name}: {len(docs)} docs in {best:.3f} s: {len(docs) / best * 60:.0f} docs/min (best of {repeats})")
        n = sum(s["docs"] for s in out["sets"].values())
        secs = sum(s["seconds"] for s in out["sets"].values())
        out["deferred_docs_per_min"] = round(n / secs * 60, 1)
        if accuracy:
            with ParamDB.open(root / "fictional-0", model=lm, embedder=embedder) as db:
                qs = [(q["q"], q["a"]) for it in fictional for q in it["questions"]]
                out["questions"] = len(qs)
                for mode in ("prag", "icl"):
                    answers = []
                    for i in range(0, len(qs), 8):
                        answers += db.generate_batch([q for q, _ in qs[i:i + 8]], k=1, mode=mode)
                    acc = sum(contains_answer(a.text, g) for a, (_, g) in zip(answers, qs)) / len(qs)
                    named = sum(any("not yet parameterized" in n for n in a.notes) for a in answers)
                    out[f"{mode}_pending_acc"] = round(acc, 3)
                    out[f"{mode}_answers_noting_pending"] = named
                    log(f"{mode} on pending rows: accuracy {acc:.3f} on {len(qs)} questions "
                        f"({named} answers name pending rows in their notes)")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    out["prag_pending_minus_icl"] = round(out["prag_pending_acc"] - out["icl_pending_acc"], 3) if accuracy else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="base model folder or GGUF (default: the packaged model)")
    ap.add_argument("--popqa", type=int, default=20, help="PopQA dev items whose gold passages are inserted")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-accuracy", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    r = deferred_figures(args.model, args.popqa, args.repeats, not args.no_accuracy)
    print(json.dumps(r) if args.json else json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
