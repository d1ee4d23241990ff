"""Benchmark: translated (one forward pass) vs trained adapters, side by side in one run.

Speed: end-to-end ``db.insert`` of the same documents (the eval items' passages), trained and translated.
Quality on documents the translator never learned from (split by item): it learns from the passages of
PopQA dev items 101..100+L and answers items 1..N, k=3; F1 and EM for closed, icl, prag and combine with
trained and with translated adapters, paired bootstrap intervals for the two targets, and the norm of the
translated updates against the trained ones (a near-zero adapter would turn combine into icl). Fictional
facts: prag accuracy with translated adapters. Translator training: seconds per document, peak RSS, bytes.

Order: cheap figures first (translator training, then insert speed on the --docs passages trained and
translated back to back, bytes, fictional facts),
then the expensive ones (every eval passage trained, PopQA answered both ways). After each stage the figures
so far are written to --work/results.json, so a run cut short still leaves what it finished.
Resumable: stores, translator and predictions live in --work; a rerun continues where it stopped.
``--trained-store`` starts from a store ``paramdb eval`` already built over the same items (copied, with its
``--trained-predictions``), so the trained modes cost nothing twice; ``--translator`` takes a translator
written by tools/translator_variants.py instead of distilling one here.

    python tools/bench_translate.py --items 10 --learn-items 100 --epochs 2 --json
    python tools/bench_translate.py --items 100 --docs 8 --translator /tmp/tv/lex8_L48_e2.translator \
        --trained-store popqa_dev.store --trained-predictions popqa.pred.jsonl
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from paramdb import ParamDB, evaluation
from paramdb.evaluation import runner
from paramdb.evaluation import paired_bootstrap
from paramdb.knowledge.lora import side_path
from paramdb.knowledge.translator import parse_settings
from paramdb.storage.codec import decode_tensors
from paramdb.engine.translator_blob import cached as stored_translator
from paramdb.ops.distill_store import distill

HERE = Path(__file__).parent
DATA = [HERE / "data" / "eval" / "popqa_dev.jsonl", HERE.parent.parent / "shared" / "eval" / "popqa_dev.jsonl"]
FICTIONAL = HERE / "data" / "fictional.jsonl"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cached(work: Path, name: str, make):
    path = work / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    value = make()
    path.write_text(json.dumps(value))
    return value


def timed_insert(db, docs, **kw) -> dict:
    """Seconds to insert those of ``docs`` not yet stored, and how many that was. Models (and the translator)
    are loaded first: loading them is a cost per process, not per document, and would swamp a translated batch."""
    todo = [d for d in docs if d["id"] not in db]
    if not todo:
        return {"seconds": 0.0, "docs": 0}
    if todo:
        _ = (db.handle.models.lm, db.handle.models.embedder)
        if kw.get("parameterize") == "translate":
            stored_translator(db.handle.store)
    t0 = time.perf_counter()
    db.insert(todo, batch_size=8, progress=lambda d, t: log(f"  inserted {d}/{t}"), **kw)
    return {"seconds": time.perf_counter() - t0, "docs": len(todo)}


def update_norms(db) -> float:
    """Median Frobenius norm of ΔW = B·A over a store's rows' adapters (all modules together)."""
    names = [n for n, _ in side_path(db.handle.models.lm.model).modules]
    norms = []
    for row in db.handle.store.meta.list():
        t = decode_tensors(db.handle.store.blobs.get_adapter(row["blob_key"]))
        sq = 0.0
        for n in names:
            a, b = (torch.from_numpy(np.array(t[f"{n}.lora_{x}"], dtype=np.float32)) for x in "AB")
            sq += float(((b.T @ b) * (a @ a.T)).sum())
        norms.append(sq ** 0.5)
    return float(np.median(norms))


def per_item(pred: Path, mode: str, settings: dict, metric: str) -> dict[str, float]:
    """Each item's ``metric`` in ``mode`` answered with exactly ``settings`` (a predictions file may hold
    answers made other ways too)."""
    out = {}
    for line in pred.read_text().splitlines():
        r = json.loads(line)
        if r["mode"] == mode and r.get("settings") == settings:
            out[r["id"]] = float(r[metric])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=10, help="answer PopQA items 1..N")
    ap.add_argument("--learn-items", type=int, default=100, help="learn from the passages of items 101..100+L")
    ap.add_argument("--docs", type=int, default=None, help="time insert on at most this many passages")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--teacher", default="context")
    ap.add_argument("-k", type=int, default=3)
    ap.add_argument("--work", default="/tmp/bench-translate")
    ap.add_argument("--setting", action="append", default=[], metavar="KEY=VALUE",
                    help="translator setting for distill (e.g. lexical=4, layers=8)")
    ap.add_argument("--translator", type=Path, help="use this stored translator (translator_variants.py)")
    ap.add_argument("--trained-store", type=Path, help="start the trained store from a copy of this one")
    ap.add_argument("--trained-predictions", type=Path, help="... and its predictions (paramdb eval's)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    data = next((p for p in DATA if p.exists()), None)
    if data is None:
        sys.exit("no popqa_dev.jsonl in tools/data/eval/ or ../shared/eval/")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    items = evaluation.load_items(data)
    eval_items, learn_items = items[:args.items], items[100:100 + args.learn_items]
    eval_docs = evaluation.corpus(eval_items, False)
    timing_docs = eval_docs[:args.docs] if args.docs else eval_docs
    learn = [{"text": p.strip()} for it in learn_items for p in it.passages[:1]]
    assert not {evaluation.passage_id(d["text"]) for d in learn} & {d["id"] for d in eval_docs}, "split leaks"
    eval_file = work / "eval_items.jsonl"
    eval_file.write_text("".join(json.dumps({"id": it.id, "question": it.question, "answers": list(it.answers),
                                             "passages": list(it.passages)}) + "\n" for it in eval_items))
    out: dict = {"items": len(eval_items), "learn_docs": len(learn), "k": args.k, "teacher": args.teacher,
                 "epochs": args.epochs, "timing_docs": len(timing_docs), "data": str(data)}

    results = work / "results.json"

    def publish(stage: str) -> None:
        """Everything measured so far, in the work folder: a run cut short still leaves its cheap figures."""
        out["finished"] = stage
        results.write_text(json.dumps(out, indent=2))
        log(f"figures so far in {results} (through {stage})")

    # Cheap figures first: translator training, then insert speed both ways back to back (the same machine
    # load for both), translator and adapter bytes, fictional facts.
    overrides = parse_settings(args.setting)
    variant = f"{args.teacher}_L{len(learn)}_e{args.epochs}" + "".join(
        f"_{k}{'-'.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in sorted(overrides.items()))
    if args.translator:
        variant = args.translator.stem
    translated_store = work / f"translated_{variant}.store"
    if args.trained_store and not (work / "trained.store").exists():
        shutil.copytree(args.trained_store, work / "trained.store")
        if args.trained_predictions:
            shutil.copy(args.trained_predictions, work / "trained.predictions.jsonl")
    log(f"translated store: {args.translator or f'distill from {len(learn)} passages'}")
    with ParamDB.open(translated_store, create=True) as db:
        if args.translator and db.handle.store.blobs.get_model("translator") is None:
            db.handle.store.blobs.put_model("translator", args.translator.read_bytes())

        def do_distill():
            if args.translator:
                info = db.stats()["translator"]
                return {"from": str(args.translator), "bytes": len(args.translator.read_bytes()),
                        "params": stored_translator(db.handle.store).n_params(), "learned_from": info["learned_from"]}
            t0 = time.perf_counter()
            r = distill(db.handle.store, db.handle.models, learn, teacher=args.teacher, epochs=args.epochs, lr=args.lr, translator=overrides or None,
                           progress=lambda e: log(f"  distill {e}") if e["event"] != "step" or e["step"] % 10 == 0
                           else None)
            return {"seconds_per_doc": r.seconds_per_doc, "peak_rss_mb": r.peak_rss_mb, "bytes": r.translator_bytes,
                    "params": r.translator_params, "held_out_loss": r.held_out_loss, "base_loss": r.base_loss,
                    "epochs": r.epochs, "held_out_docs": r.held_out_docs,
                    "samples_and_train_seconds_per_doc": (time.perf_counter() - t0) / len(learn)}
        dist = cached(work, f"distill_{variant}", do_distill)
        translator_value = db.handle.store.blobs.get_model("translator")
    out["translator_bytes"], out["translator_params"], out["distill"] = dist["bytes"], dist["params"], dist
    if args.translator:
        out["learn_docs"] = dist["learned_from"]["count"]

    log(f"timing store: {len(timing_docs)} passages trained")
    with ParamDB.open(work / "timing.store", create=True) as db:
        t_trained = cached(work, "t_trained", lambda: timed_insert(db, timing_docs))
        if not isinstance(t_trained, dict):      # a work folder from the first version: seconds alone
            t_trained = {"seconds": float(t_trained), "docs": len(timing_docs)}
        adapter_bytes = len(db.handle.store.blobs.get_adapter(db.handle.store.meta.list(limit=1)[0]["blob_key"]))
    out["timed"] = {"trained": t_trained}
    out["adapter_bytes"] = adapter_bytes
    with ParamDB.open(translated_store) as db:
        t_translate = cached(work, f"t_translate_{variant}",
                             lambda: timed_insert(db, timing_docs, parameterize="translate"))
    rate_t = t_trained["docs"] / t_trained["seconds"]
    rate_x = t_translate["docs"] / t_translate["seconds"]
    out["docs_per_min_trained"] = round(60 * rate_t, 3)
    out["docs_per_min_translate"] = round(60 * rate_x, 3)
    out["speedup"] = round(rate_x / rate_t, 1)
    out["timed"]["translated"] = t_translate
    publish("speed and bytes")

    fict = [json.loads(line) for line in FICTIONAL.read_text().splitlines() if line.strip()]
    def do_fictional():
        with ParamDB.open(work / f"fictional_{variant}.store", create=True) as fdb:
            fdb.handle.store.blobs.put_model("translator", translator_value)     # same base model: the same translator
            timed_insert(fdb, [{"id": f["id"], "text": f["text"]} for f in fict], parameterize="translate")
            qs = [(q["q"], q["a"]) for f in fict for q in f["questions"]]
            answers = fdb.generate_batch([q for q, _ in qs], k=1, mode="prag")
            hits = [evaluation.em_in_output(a.text, al) for a, (_, al) in zip(answers, qs)]
            return {"accuracy": round(float(np.mean(hits)), 4), "questions": len(qs), "docs": len(fict)}
    fictional = cached(work, f"fictional_{variant}", do_fictional)
    out["fictional_prag_translated"] = fictional["accuracy"]
    out["fictional"] = fictional
    publish("fictional")

    # Expensive: every eval passage trained, then PopQA answered both ways.
    log(f"trained store: {len(eval_docs)} passages")
    with ParamDB.open(work / "trained.store", create=True) as db:
        timed_insert(db, eval_docs)
        res_t = runner.run(db, eval_file, ["closed", "icl", "prag", "combine"], k=args.k,
                             predictions=work / "trained.predictions.jsonl", report=log)
        norm_trained = update_norms(db)
    modes = {m: res_t["modes"][m] for m in ("closed", "icl")}
    modes |= {f"{m}_trained": res_t["modes"][m] for m in ("prag", "combine")}
    out["popqa"] = {m: {"em": v["em"], "f1": v["f1"], "n": res_t["items"]} for m, v in modes.items()}
    out["update_norm_median"] = {"trained": round(norm_trained, 4)}
    publish("popqa trained")

    with ParamDB.open(translated_store, create=True) as db:
        timed_insert(db, eval_docs, parameterize="translate")
        res_x = runner.run(db, eval_file, ["prag", "combine"], k=args.k,
                             predictions=work / f"translated_{variant}.predictions.jsonl", report=log)
        norm_translated = update_norms(db)
    out["popqa"] |= {f"{m}_translated": {"em": v["em"], "f1": v["f1"], "n": res_x["items"]}
                     for m, v in ((m, res_x["modes"][m]) for m in ("prag", "combine"))}
    pt, px = work / "trained.predictions.jsonl", work / f"translated_{variant}.predictions.jsonl"
    ids = [it.id for it in eval_items]
    st = {f"{m}_trained": res_t["modes"][m]["settings"] for m in ("closed", "icl", "prag", "combine")}
    st |= {f"{m}_translated": res_x["modes"][m]["settings"] for m in ("prag", "combine")}
    icl_f1, comb_f1 = per_item(pt, "icl", st["icl_trained"], "f1"), per_item(px, "combine", st["combine_translated"], "f1")
    closed_em = per_item(pt, "closed", st["closed_trained"], "em")
    prag_em = per_item(px, "prag", st["prag_translated"], "em")
    out["combine_translated_minus_icl_f1"] = paired_bootstrap([comb_f1[i] for i in ids], [icl_f1[i] for i in ids])
    out["prag_translated_minus_closed_em"] = paired_bootstrap([prag_em[i] for i in ids], [closed_em[i] for i in ids])
    for m in ("prag", "combine"):      # translated against trained, item by item
        x, t = per_item(px, m, st[f"{m}_translated"], "f1"), per_item(pt, m, st[f"{m}_trained"], "f1")
        out[f"{m}_translated_minus_trained_f1"] = paired_bootstrap([x[i] for i in ids], [t[i] for i in ids])
    out["update_norm_median"]["translated"] = round(norm_translated, 4)
    publish("all")
    if args.json:
        print(json.dumps(out))
    else:
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
