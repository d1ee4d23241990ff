"""Insert speed and knowledge by base-model precision: today's fp32 recipe against the default (``auto``).

    python tools/bench_insert.py --precision-compare [--docs 24] [--popqa 20] [--bf16-docs 8] [--json]
    python tools/bench_insert.py --precision-peaks [--json]     # only the matmul rates and auto's choice

One process, one base model, the same documents for every row:
  - ``baseline``: precision fp32 with the store's default recipe, as ParamDB trained before precision was chosen
    by hardware; end-to-end ``db.insert`` docs/min on the fictional documents (tools/data/fictional.jsonl) and
    on the gold passages of the first ``--popqa`` PopQA dev items; prag accuracy on the fictional questions
    (k=1, an alias in the short answer; the whole generation's beside it);
  - ``default``: the same with ``auto``. Where ``auto`` resolves to fp32 (a CPU without bf16 matrix units)
    it is the very same configuration, so the baseline's run is reported for it rather than run twice;
  - ``bf16`` (where ``auto`` is not already bf16): the first ``--bf16-docs`` fictional documents in forced
    bf16 beside fp32 on the same documents, to show what bf16 costs or gains on this hardware;
  - the training FLOP/s reached (4 x decoder parameters x trained tokens / training seconds, attention
    excluded) beside the fp32 and bf16 matmul peaks (2048x2048) measured in the same run and threads;
  - deferred insert (``parameterize="later"``) docs/min on the same documents, where the store supports it.
"""
from __future__ import annotations

import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import contains_answer, fictional_docs, log, maxrss_mb  # noqa: E402

POPQA = Path(__file__).parent / "data" / "eval" / "popqa_dev.jsonl"


def matmul_tflops(dtype, n: int = 2048, reps: int = 5) -> float:
    """The median rate of an n x n matmul in ``dtype`` on the current threads."""
    import torch

    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * n ** 3 / statistics.median(times) / 1e12


def popqa_passages(limit: int) -> list[dict]:
    from paramdb.evaluation import corpus, load_items

    return corpus(load_items(POPQA, limit), distractors=False) if limit else []


def _insert(lm, embedder, docs: list[dict], root: Path, name: str, parameterize: str = "train") -> dict:
    from paramdb import ParamDB

    path = root / name
    with ParamDB.open(path, create=True, model=lm, embedder=embedder) as db:
        t = time.perf_counter()
        db.insert([{"id": d["id"], "text": d["text"]} for d in docs], parameterize=parameterize)
        seconds = time.perf_counter() - t
        stats = db.stats()
    return {"docs": len(docs), "seconds": round(seconds, 2), "docs_per_min": round(60 * len(docs) / seconds, 2),
            "bytes_per_row": round(stats["bytes"]["total"] / max(1, len(docs))), "path": path}


def _prag_accuracy(lm, embedder, path: Path, items: list[dict]) -> dict:
    from paramdb import ParamDB

    qs = [(q["q"], q["a"]) for it in items for q in it["questions"]]
    with ParamDB.open(path, model=lm, embedder=embedder) as db:
        answers = db.generate_batch([q for q, _ in qs], k=1, mode="prag")
    short = [contains_answer(a.text, aliases) for a, (_, aliases) in zip(answers, qs)]
    whole = [contains_answer(a.generation, aliases) for a, (_, aliases) in zip(answers, qs)]
    return {"questions": len(qs), "short": round(sum(short) / len(qs), 4), "generation": round(sum(whole) / len(qs), 4)}


def _train_tflops(lm, items: list[dict]) -> float:
    """Training FLOP/s on the fictional documents' own samples: 4 x decoder parameters per trained token."""
    from paramdb.config import NEW_STORE_AUGMENT, default_training
    from paramdb.knowledge.augment import build_samples
    from paramdb.knowledge.train import TrainReport, _encode, train_adapters

    n_params = sum(p.numel() for p in lm.model.parameters())
    decoder = sum(p.numel() for p in lm.model.get_decoder().layers.parameters())
    settings = default_training(n_params)
    samples = build_samples(lm, [it["text"] for it in items], NEW_STORE_AUGMENT)
    report = TrainReport()
    t = time.perf_counter()
    train_adapters(lm, samples, [it["id"] for it in items], settings, report)
    seconds = time.perf_counter() - t
    tokens = sum(sum(len(ids) for ids, _ in _encode(lm.tokenizer, s, settings.max_length)) * e
                 for s, e in zip(samples, report.epochs))
    return 4 * decoder * tokens / seconds / 1e12


def peaks(device: str | None = None) -> dict:
    """What ``auto`` picks here, beside the fp32 and bf16 matmul rates that justify it (same threads)."""
    import torch

    from paramdb.knowledge.precision import cpu_has_bf16_matmul, precision_for

    auto = precision_for("cpu" if device in (None, "cpu") else device).weights
    out = {"threads": torch.get_num_threads(), "cpu_has_bf16_matmul": cpu_has_bf16_matmul(),
           "auto_resolves_to": str(auto).replace("torch.", ""),
           "peak_fp32_tflops": round(matmul_tflops(torch.float32), 4),
           "peak_bf16_tflops": round(matmul_tflops(torch.bfloat16), 4)}
    out["bf16_over_fp32"] = round(out["peak_bf16_tflops"] / out["peak_fp32_tflops"], 4)
    log(f"matmul peaks: fp32 {out['peak_fp32_tflops']} TFLOP/s, bf16 {out['peak_bf16_tflops']} TFLOP/s "
        f"({out['bf16_over_fp32']}x); bf16 units: {out['cpu_has_bf16_matmul']}; auto resolves to "
        f"{out['auto_resolves_to']}")
    return out


def run(args) -> dict:
    import torch

    from paramdb.db import PARAMETERIZE
    from paramdb.knowledge.embed import Embedder
    from paramdb.knowledge.models import load_model
    from paramdb.knowledge.precision import model_dtype

    fictional = fictional_docs(args.docs)
    popqa = popqa_passages(args.popqa)
    sets = {"fictional": fictional, "popqa": popqa} if popqa else {"fictional": fictional}
    out = peaks(args.device)
    auto = getattr(torch, out["auto_resolves_to"])
    root = Path(tempfile.mkdtemp(prefix="paramdb-bench-precision-"))
    embedder = Embedder()
    try:
        fp32 = load_model(args.model, args.device, "fp32")
        runs = {"baseline": {}}
        for name, docs in sets.items():
            runs["baseline"][name] = _insert(fp32, embedder, docs, root, f"baseline-{name}")
            log(f"baseline fp32 {name}: {runs['baseline'][name]['docs_per_min']} docs/min")
        acc_base = _prag_accuracy(fp32, embedder, runs["baseline"]["fictional"]["path"], fictional)
        out["train_tflops_fp32"] = round(_train_tflops(fp32, fictional[:8]), 3)
        if auto == torch.float32:
            runs["default"], acc_default = runs["baseline"], acc_base
            out["default_is_baseline"] = True
            out["train_tflops"] = out["train_tflops_fp32"]
        else:
            lm = load_model(args.model, args.device, "auto")
            runs["default"] = {name: _insert(lm, embedder, docs, root, f"default-{name}") for name, docs in sets.items()}
            acc_default = _prag_accuracy(lm, embedder, runs["default"]["fictional"]["path"], fictional)
            out["train_tflops"] = round(_train_tflops(lm, fictional[:8]), 3)
            out["default_is_baseline"] = False
        if auto != torch.bfloat16 and args.bf16_docs:
            few = fictional[:args.bf16_docs]
            bf16 = load_model(args.model, args.device, "bf16")
            assert model_dtype(bf16.model) == torch.bfloat16
            b = _insert(bf16, embedder, few, root, "bf16-few")
            f = _insert(fp32, embedder, few, root, "fp32-few")
            out["forced_bf16"] = {"docs": len(few), "docs_per_min_bf16": b["docs_per_min"],
                                  "docs_per_min_fp32": f["docs_per_min"],
                                  "bf16_over_fp32": round(b["docs_per_min"] / f["docs_per_min"], 3),
                                  "prag_acc_bf16": _prag_accuracy(bf16, embedder, b["path"], few),
                                  "prag_acc_fp32": _prag_accuracy(fp32, embedder, f["path"], few),
                                  "train_tflops_bf16": round(_train_tflops(bf16, few), 3)}
            log(f"forced bf16 on {len(few)} docs: {out['forced_bf16']}")
        if "later" in PARAMETERIZE:
            out["deferred"] = {name: _insert(fp32, embedder, docs, root, f"deferred-{name}", "later")
                               for name, docs in sets.items()}
        for table in [runs["baseline"], runs["default"], *([out["deferred"]] if "deferred" in out else [])]:
            for r in table.values():
                r.pop("path", None)
        out |= {"runs": runs, "prag_acc_baseline": acc_base, "prag_acc": acc_default}
        base_min = sum(r["seconds"] for r in runs["baseline"].values())
        new_min = sum(r["seconds"] for r in runs["default"].values())
        n_docs = sum(r["docs"] for r in runs["baseline"].values())
        out["docs_per_min_baseline"] = round(60 * n_docs / base_min, 2)
        out["docs_per_min"] = round(60 * n_docs / new_min, 2)
        out["speedup_end_to_end"] = round(base_min / new_min, 3)
        if "deferred" in out:
            d_sec = sum(r["seconds"] for r in out["deferred"].values())
            out["deferred_docs_per_min"] = round(60 * n_docs / d_sec, 2)
        out["peak_rss_mb"] = round(maxrss_mb(resource.getrusage(resource.RUSAGE_SELF)), 1)
        out["bytes_per_row"] = runs["default"]["fictional"]["bytes_per_row"]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return out


def print_table(r: dict) -> None:
    log(f"threads {r['threads']}; auto resolves to {r['auto_resolves_to']}; matmul peaks fp32 "
        f"{r['peak_fp32_tflops']} / bf16 {r['peak_bf16_tflops']} TFLOP/s; training reaches {r['train_tflops']}")
    log(f"{'set':<10} {'baseline docs/min':>18} {'default docs/min':>17} {'deferred docs/min':>18}")
    for name, base in r["runs"]["baseline"].items():
        deferred = r.get("deferred", {}).get(name, {}).get("docs_per_min", "-")
        log(f"{name:<10} {base['docs_per_min']:>18} {r['runs']['default'][name]['docs_per_min']:>17} {deferred:>18}")
    log(f"end to end: {r['docs_per_min_baseline']} -> {r['docs_per_min']} docs/min ({r['speedup_end_to_end']}x"
        f"{', the same configuration' if r.get('default_is_baseline') else ''}); prag accuracy "
        f"{r['prag_acc_baseline']} -> {r['prag_acc']}")
    if "forced_bf16" in r:
        f = r["forced_bf16"]
        log(f"forced bf16 on {f['docs']} docs: {f['docs_per_min_bf16']} docs/min against fp32's "
            f"{f['docs_per_min_fp32']} ({f['bf16_over_fp32']}x); prag {f['prag_acc_bf16']} against {f['prag_acc_fp32']}")
