"""What int8 adapters cost and save against float16, on the same trained adapters in the same run.

    python tools/bench_compact.py [--store FICTIONAL_STORE] [--popqa-store STORE --popqa-items N]
                                  [--parts fictional,popqa] [--work DIR] [--switch-questions Q] [--json]

Trains once, stores twice: the float16 store (built here from tools/data/fictional.jsonl, or a copy of
``--store``, migrated to this format if older) is copied with ``copy_store`` and the copy converted by
``paramdb compact``, so the two stores differ in nothing but how their adapters are kept. Then, per store:

  - bytes: ``stats()['adapter_bytes']`` (every adapter value in LMDB) and per row; ratio int8 / float16; and
    the LMDB data file of the float16 store, of its copy compacted in place, and of that copied again;
  - fictional facts: prag accuracy (an alias in the answer; k=1, as tools/eval_fictional.py) on 40 questions;
  - answer-path cost: the cold switch of tools/bench_generate.py (fresh adapter cache; rows from SQL, blobs from
    LMDB, decode, merge, set the side path, clear), k=3, median over the questions;
  - PopQA (with ``--popqa-store``: a store built by ``paramdb eval`` from the first N items' passages):
    prag EM and F1 on those N items through ``paramdb.evaluation.runner.run`` (k=3, hybrid).

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

from paramdb import ParamDB  # noqa: E402
from paramdb.evaluation import runner  # noqa: E402
from paramdb.knowledge.inject import merge_flat  # noqa: E402
from paramdb.knowledge.lora import side_path  # noqa: E402
from paramdb.ops.compact import compact  # noqa: E402
from paramdb.ops.copy import copy_store  # noqa: E402
from paramdb.ops.migrate import migrate  # noqa: E402
from paramdb.engine.adapters import factors_for_ids

FICTIONAL = TOOLS / "data" / "fictional.jsonl"
POPQA = TOOLS / "data" / "eval" / "popqa_dev.jsonl"


def log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


FILES: dict[str, dict[str, int]] = {}     # per benchmark: LMDB data file bytes of each store


def both_ways(source: Path | None, work: Path, name: str, build=None) -> tuple[Path, Path]:
    """(float16 store, int8 store) holding the same trained adapters: a copy of ``source`` (or one built by
    ``build``), then a copy of that converted in place by compact, copied again (as `paramdb copy` would) so
    its LMDB file is compacted too."""
    fp16, int8 = work / f"{name}-float16", work / f"{name}-int8"
    if source is not None:
        shutil.copytree(source, fp16)
        migrate(fp16)
    else:
        build(fp16)
    in_place = work / f"{name}-int8-in-place"
    copy_store(fp16, in_place)
    report = compact(in_place, "int8")
    copy_store(in_place, int8)                         # what `paramdb copy` makes of it: LMDB compacted
    FILES[name] = {tag: (path / "blobs.lmdb" / "data.mdb").stat().st_size
                   for tag, path in (("float16", fp16), ("int8_in_place", in_place), ("int8_copied", int8))}
    log(f"{name}: {report.converted} adapters converted to int8 ({report.ratio:.3f}x the bytes); "
        f"LMDB file bytes {FILES[name]}")
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


def cold_switch_ms(dbs: dict[str, ParamDB], questions: list[str], k: int = 3) -> dict[str, float]:
    """bench_generate's cold switch (fresh cache; adapters read, decoded, merged, set on the side path, cleared)
    per store, the stores taking turns question by question so a change in the machine's load hits both."""
    times: dict[str, list[float]] = {tag: [] for tag in dbs}
    hits = [[h.id for h in next(iter(dbs.values())).query(q, k=k)] for q in questions]
    for ids in [hits[0]] + hits:                       # the first round is a warm-up, not counted
        for tag, db in dbs.items():
            lm = db.handle.models.lm
            sp, dtype, scale = side_path(lm.model), next(lm.model.parameters()).dtype, db.config.training.scale
            db.handle.store.cache.clear()
            t0 = time.perf_counter()
            sp.set(merge_flat([factors_for_ids(db.handle.store, db.handle.models.lm, ids)], lm.device, dtype, scale=scale), 1.0)
            sp.clear()
            times[tag].append((time.perf_counter() - t0) * 1e3)
    return {tag: round(statistics.median(t[1:]), 2) for tag, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, help="a trained fictional-facts store to reuse (copied, never written)")
    ap.add_argument("--popqa-store", type=Path, help="a store built by `paramdb eval` on PopQA (copied)")
    ap.add_argument("--popqa-items", type=int, default=20)
    ap.add_argument("--switch-questions", type=int, default=16)
    ap.add_argument("--parts", default="fictional,popqa", help="which figures (popqa needs --popqa-store)")
    ap.add_argument("--work", type=Path)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="paramdb-compact-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        result = {"fictional": {}, "popqa": {}}
        if "fictional" in args.parts:
            result["fictional"] = fictional_figures(args, work)
        if args.popqa_store and "popqa" in args.parts:
            result["popqa"] = popqa_figures(args, work)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


def fictional_figures(args, work: Path) -> dict:
    out: dict = {}
    fp16, int8 = both_ways(args.store, work, "fictional", build_fictional)
    items = [json.loads(line) for line in open(FICTIONAL) if line.strip()]
    qs = [q["q"] for it in items for q in it["questions"]][:args.switch_questions]
    answers = {}
    with ParamDB.open(fp16) as db16, ParamDB.open(int8) as db8:
        dbs = {"float16": db16, "int8": db8}
        for tag, db in dbs.items():
            acc = fictional_accuracy(db)
            answers[tag] = acc.pop("answers")
            out[tag] = {**size(db), **acc}
            log(f"fictional {tag}: {out[tag]}")
        for tag, ms in cold_switch_ms(dbs, qs).items():
            out[tag]["cold_switch_ms"] = ms
    f16, i8 = out["float16"], out["int8"]
    out["ratio"] = {
        "adapter_bytes": round(i8["adapter_bytes"] / f16["adapter_bytes"], 4),
        "prag_accuracy_delta": round(i8["prag_accuracy"] - f16["prag_accuracy"], 3),
        "same_answers": sum(a == b for a, b in zip(answers["float16"], answers["int8"])),
        "cold_switch": round(i8["cold_switch_ms"] / f16["cold_switch_ms"], 3)}
    out["lmdb_file_bytes"] = FILES["fictional"]
    return out


def popqa_figures(args, work: Path) -> dict:
    out: dict = {}
    fp16, int8 = both_ways(args.popqa_store, work, "popqa")
    for tag, path in (("float16", fp16), ("int8", int8)):
        with ParamDB.open(path) as db:
            result = runner.run(db, POPQA, ["prag"], k=3, limit=args.popqa_items,
                                  predictions=work / f"popqa-{tag}.jsonl")
            prag = result["modes"]["prag"]
            out[tag] = {**size(db), "items": result["items"], "em": prag["em"], "f1": prag["f1"]}
        log(f"popqa {tag}: {out[tag]}")
    out["ratio"] = {"adapter_bytes": round(out["int8"]["adapter_bytes"] / out["float16"]["adapter_bytes"], 4),
                    "f1_delta": round(out["int8"]["f1"] - out["float16"]["f1"], 4),
                    "em_delta": round(out["int8"]["em"] - out["float16"]["em"], 4)}
    out["lmdb_file_bytes"] = FILES["popqa"]
    return out


if __name__ == "__main__":
    main()
