"""Run a QA benchmark against a store: build it from the items' passages, ask every question per mode.

Rerunning with the same store reuses its adapters (only missing passages are trained) and resumes the
predictions file (questions already answered in a mode are not asked again).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from statistics import mean
from typing import Callable

from .. import validate
from ..config import DEFAULT_MERGE, adapter_weight_for
from ..engine.answer import prompt_signature
from .data import corpus, gold_ids, load_items, passage_id
from .scoring import em_in_output, paired_bootstrap, recall_at_k, score

Report = Callable[[str], None]


def _settings(mode: str, k: int, method: str, merge: str, adapter_weight: float | None, generation: int,
              short: bool, prompt: str) -> dict:
    """What an answer in ``mode`` depends on, as recorded with each prediction: a rerun with other settings, other
    prompt words (``prompt``: engine.answer.prompt_signature), or on a store that has changed since (other
    passages to retrieve from), asks again instead of resuming from answers made another way. Closed-book
    answers depend only on ``short`` and the prompt."""
    if mode == "closed":
        return {"short": short, "prompt": prompt}
    s: dict = {"k": k, "method": method, "store_generation": generation, "short": short, "prompt": prompt}
    if mode in ("prag", "combine"):
        s |= {"merge": merge, "adapter_weight": adapter_weight_for(mode, adapter_weight)}
    return s


def _key(mode: str, item_id: str, settings: dict | None) -> tuple[str, str, str]:
    return mode, item_id, json.dumps(settings, sort_keys=True)


def _done(predictions: Path) -> dict[tuple[str, str, str], dict]:
    out = {}
    if predictions.exists():
        for line in predictions.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                out[_key(row["mode"], row["id"], row.get("settings"))] = row
    return out


def run(db, data: str | Path, modes: list[str], k: int = 3, limit: int | None = None,
        distractors: bool = False, method: str = "hybrid", predictions: str | Path | None = None,
        batch_size: int = 8, merge: str = DEFAULT_MERGE, adapter_weight: float | None = None, short: bool = True,
        report: Report = lambda _msg: None) -> dict:
    """Per mode: EM-in-output and token F1 of the answers (short ones unless ``short`` is False), EM-in-output
    of the whole generations (``em_generation``: the fact anywhere in what the model wrote), seconds per
    question; plus recall@k of the gold passages."""
    for mode in modes:
        validate.mode(mode)
    items = load_items(data, limit)
    docs = [d for d in corpus(items, distractors) if d["id"] not in db]
    if docs:
        report(f"building the store: {len(docs)} passages to parameterize")
        db.insert(docs, batch_size=batch_size,
                  progress=lambda done, total: report(f"  parameterized {done}/{total} passages"))
    hits = {it.id: db.query(it.question, k=k, method=method) for it in items}
    recall = mean(recall_at_k([h.id for h in hits[it.id]], gold_ids(it)) for it in items)
    pred_path = Path(predictions or Path(str(data)).stem + ".predictions.jsonl")
    done = _done(pred_path)
    result = {"items": len(items), "k": k, "method": method, "merge": merge, "recall_at_k": round(recall, 4),
              "modes": {}}
    with open(pred_path, "a") as out:
        for mode in modes:
            settings = _settings(mode, k, method, merge, adapter_weight, db.generation, short,
                                 prompt_signature(db.handle.store.config, mode, short))
            todo = [it for it in items if _key(mode, it.id, settings) not in done]
            for i in range(0, len(todo), batch_size):
                chunk = todo[i:i + batch_size]
                t0 = time.perf_counter()
                answers = db.generate_batch([it.question for it in chunk], k=k, mode=mode, method=method,
                                            merge=merge, adapter_weight=adapter_weight, short=short)
                per_q = (time.perf_counter() - t0) / len(chunk)
                for it, ans in zip(chunk, answers):
                    row = {"mode": mode, "id": it.id, "question": it.question, "prediction": ans.text,
                           "generation": ans.generation, "hits": [h.id for h in ans.hits], "s": round(per_q, 3),
                           "settings": settings, **score(ans.text, it.answers),
                           "em_generation": em_in_output(ans.generation, it.answers)}
                    done[_key(mode, it.id, settings)] = row
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
                out.flush()
                report(f"  {mode}: {min(i + batch_size, len(todo))}/{len(todo)} questions")
            rows = [done[_key(mode, it.id, settings)] for it in items]
            result["modes"][mode] = {"settings": settings, "em": round(mean(float(r["em"]) for r in rows), 4),
                                     "f1": round(mean(r["f1"] for r in rows), 4),
                                     "em_generation": round(mean(float(r["em_generation"]) for r in rows), 4),
                                     "s_per_q": round(mean(r["s"] for r in rows), 3)}
    result["paired"] = _paired(result["modes"], done, items)
    result["predictions"] = str(pred_path)
    return result


# The comparisons the method is judged by: what the adapters add without passages, and beside them.
PAIRS = (("prag", "closed"), ("combine", "icl"))


def _paired(modes: dict, done: dict, items: list) -> dict:
    """For each pair in PAIRS that was run: EM and F1 differences per item with 95% paired bootstrap intervals."""
    out = {}
    for a, b in PAIRS:
        if a in modes and b in modes:
            rows = [(done[_key(a, it.id, modes[a]["settings"])], done[_key(b, it.id, modes[b]["settings"])])
                    for it in items]
            out[f"{a}-{b}"] = {m: paired_bootstrap([float(x[m]) for x, _ in rows],
                                                              [float(y[m]) for _, y in rows]) for m in ("em", "f1")}
    return out


def retrieval_only(data: str | Path, k: int = 3, limit: int | None = None, distractors: bool = False,
                   embedder=None, report: Report = lambda _msg: None) -> dict:
    """recall@k of the gold passages for every retrieval method, with no adapters trained.

    Retrieval quality does not depend on the adapters, so it can be measured on a whole dataset in
    minutes where a full evaluation takes hours of training on a CPU. Same indexes as a store uses.
    """
    from ..knowledge.embed import Embedder
    from ..retrieval import METHODS, retrieve
    from ..storage.lexical import LexicalIndex
    from ..storage.vectors import VectorIndex

    items = load_items(data, limit)
    docs = corpus(items, distractors)
    report(f"embedding {len(docs)} passages")
    emb = embedder or Embedder()
    vectors = emb.embed([d["text"] for d in docs])
    dense = VectorIndex(Path("unsaved.hnsw"), emb.dim, capacity=len(docs))
    dense.build(enumerate(vectors))
    lexical = LexicalIndex(Path("unsaved.bm25"))
    lexical.build((i, d["text"]) for i, d in enumerate(docs))
    qvecs = emb.embed([it.question for it in items])
    result = {"items": len(items), "passages": len(docs), "k": k, "distractors": distractors,
              "recall_at_k": {}, "hit_at_k": {}, "first_gold_at_k": {}}
    for method in METHODS:
        recall, hit, first = [], [], []
        for it, qv in zip(items, qvecs):
            top = retrieve(method, k, dense=lambda n, qv=qv: dense.search(qv, n),
                           bm25=lambda n, q=it.question: lexical.search(q, n))
            found = {docs[i]["id"] for i, _ in top}
            gold = gold_ids(it)
            recall.append(recall_at_k(found, gold))
            hit.append(float(bool(found & gold)))
            first.append(float(passage_id(it.passages[0]) in found))
        for key, values in (("recall_at_k", recall), ("hit_at_k", hit), ("first_gold_at_k", first)):
            result[key][method] = round(mean(values), 4)
    return result

