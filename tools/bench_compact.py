"""What int8 adapters cost and save against float16, on the same trained adapters in the same run.

    python tools/bench_compact.py [--store FICTIONAL_STORE] [--popqa-store STORE --popqa-items N]
                                  [--work DIR] [--switch-questions Q] [--json]

Trains once, stores twice: the float16 store (built here from tools/data/fictional.jsonl, or a copy of
``--store``, migrated to this format if older) is copied with ``copy_store`` and the copy converted by
``paramdb compact``, so the two stores differ in nothing but how their adapters are kept. Then, per store:

  - bytes: ``stats()['adapter_bytes']`` (every adapter value in LMDB) and per row; ratio int8 / float16;
  - fictional facts: prag accuracy (an alias in the answer; k=1, as tools/eval_fictional.py) on 40 questions;
  - answer-path cost: the cold switch of tools/bench_generate.py (fresh adapter cache; rows from SQL, blobs from
    LMDB, decode, merge, set the side path, clear), k=3, median over the questions;
  - PopQA (with ``--popqa-store``: a store built by ``paramdb eval`` from the first N items' passages):
    prag EM and F1 on those N items through ``paramdb.evaluate.run`` (k=3, hybrid).

The given stores are never written: the work happens on copies under ``--work`` (default: a temporary
folder, removed afterwards). With ``--json`` the last line of output is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))

from eval_fictional import contains_answer  # noqa: E402

from paramdb import ParamDB, evaluate  # noqa: E402
from paramdb.knowledge.inject import AdapterCache, merge_flat  # noqa: E402
from paramdb.knowledge.lora import side_path  # noqa: E402
from paramdb.ops.compact import compact  # noqa: E402
from paramdb.ops.copy import copy_store  # noqa: E402
from paramdb.ops.migrate import migrate  # noqa: E402

FICTIONAL = TOOLS / "data" / "fictional.jsonl"
POPQA = TOOLS.parent.parent / "shared" / "eval" / "popqa_dev.jsonl"


def log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def both_ways(source: Path | None, work: Path, name: str, build=None) -> tuple[Path, Path]:
    """(float16 store, int8 store) holding the same trained adapters: a copy of ``source`` (or one built by
    ``build``), then a copy of that converted by compact."""
    fp16, int8 = work / f"{name}-float16", work / f"{name}-int8"
    if source is not None:
        shutil.copytree(source, fp16)
        migrate(fp16)
    else:
        build(fp16)
    copy_store(fp16, int8)
    report = compact(int8, "int8")
    log(f"{name}: {report.converted} adapters converted to int8 ({report.ratio:.3f}x the bytes)")
    return fp16, int8


def build_fictional(path: Path) -> None:
    items = [json.loads(line) for line in open(FICTIONAL) if line.strip()]
    with ParamDB.open(path, create=True) as db:
        db.insert([{"id": it["id"], "text": it["text"]} for it in items], batch_size=4,
                  progress=lambda d, n: log(f"  trained {d}/{n}"))


def size(db: ParamDB) -> dict:
    s = db.stats()
    return {"rows": s["documents"], "adapter_bytes": s["adapter_bytes"], "bytes_per_row": s["adapter_bytes_per_row"]}


def fictional_accuracy(db: ParamDB, k: int = 1) -> dict:
    items = [json.loads(line) for line in open(FICTIONAL) if line.strip()]
    qs = [(q["q"], q["a"]) for it in items if it["id"] in db for q in it["questions"]]
    answers = []
    for i in range(0, len(qs), 8):
        answers += db.generate_batch([q for q, _ in qs[i:i + 8]], k=k, mode="prag")
    right = [contains_answer(a.text, aliases) for a, (_, aliases) in zip(answers, qs)]
    return {"questions": len(qs), "prag_accuracy": round(sum(right) / len(qs), 3), "answers": [a.text for a in answers]}


def cold_switch_ms(db: ParamDB, questions: list[str], k: int = 3) -> float:
    """bench_generate's cold switch: fresh cache, adapters read, decoded, merged, set on the side path, cleared."""
    lm = db.lm
    sp, dtype, scale = side_path(lm.model), next(lm.model.parameters()).dtype, db.config.training.scale
    hits = [[h.id for h in db.query(q, k)] for q in questions]
    times = []
    for ids in [hits[0]] + hits:                       # the first one is a warm-up, not counted
        db.adapter_cache = AdapterCache(db.adapter_cache.max_bytes)
        t0 = time.perf_counter()
        sp.set(merge_flat([db.adapter_factors(ids)], lm.device, dtype, scale=scale), 1.0)
        sp.clear()
        times.append((time.perf_counter() - t0) * 1e3)
    return round(statistics.median(times[1:]), 2)


def popqa(db: ParamDB, items: int, work: Path, tag: str) -> dict:
    result = evaluate.run(db, POPQA, ["prag"], k=3, limit=items, predictions=work / f"popqa-{tag}.jsonl")
    return {"items": result["items"], "em": result["modes"]["prag"]["em"], "f1": result["modes"]["prag"]["f1"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, help="a trained fictional-facts store to reuse (copied, never written)")
    ap.add_argument("--popqa-store", type=Path, help="a store built by `paramdb eval` on PopQA (copied)")
    ap.add_argument("--popqa-items", type=int, default=20)
    ap.add_argument("--switch-questions", type=int, default=16)
    ap.add_argument("--work", type=Path)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="paramdb-compact-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        result = {"fictional": {}, "popqa": {}}
        fp16, int8 = both_ways(args.store, work, "fictional", build_fictional)
        items = [json.loads(line) for line in open(FICTIONAL) if line.strip()]
        qs = [q["q"] for it in items for q in it["questions"]][:args.switch_questions]
        answers = {}
        for tag, path in (("float16", fp16), ("int8", int8)):
            with ParamDB.open(path) as db:
                acc = fictional_accuracy(db)
                answers[tag] = acc.pop("answers")
                result["fictional"][tag] = {**size(db), **acc, "cold_switch_ms": cold_switch_ms(db, qs)}
            log(f"fictional {tag}: {result['fictional'][tag]}")
        f16, i8 = result["fictional"]["float16"], result["fictional"]["int8"]
        result["fictional"]["ratio"] = {
            "adapter_bytes": round(i8["adapter_bytes"] / f16["adapter_bytes"], 4),
            "prag_accuracy_delta": round(i8["prag_accuracy"] - f16["prag_accuracy"], 3),
            "same_answers": sum(a == b for a, b in zip(answers["float16"], answers["int8"])),
            "cold_switch": round(i8["cold_switch_ms"] / f16["cold_switch_ms"], 3)}
        if args.popqa_store:
            pf16, pi8 = both_ways(args.popqa_store, work, "popqa")
            for tag, path in (("float16", pf16), ("int8", pi8)):
                with ParamDB.open(path) as db:
                    result["popqa"][tag] = {**size(db), **popqa(db, args.popqa_items, work, tag)}
                log(f"popqa {tag}: {result['popqa'][tag]}")
            result["popqa"]["f1_delta"] = round(result["popqa"]["int8"]["f1"] - result["popqa"]["float16"]["f1"], 4)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
