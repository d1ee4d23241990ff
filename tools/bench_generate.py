"""Answer-time cost of ParamDB's side path against PRAG's PEFT flow and the bare model, on one store.

    python tools/bench_generate.py [--docs N] [--questions Q] [--k 3] [--max-new-tokens T]
                                   [--batch-size 8] [--store PATH] [--model PATH] [--device DEV] [--json]

Builds a store from the first N documents of tools/data/fictional.jsonl (or reuses ``--store``; documents
already in it are not trained again), asks Q questions (the documents' own questions, cycled), and measures
per question, medians over the question set:

  (a) PEFT, PRAG's flow (tools/peft_flow.py): setup = load the k adapters from PEFT directories on disk +
      ``add_weighted_adapter(cat)`` + ``set_adapter``; teardown = ``delete_adapter`` + ``unload`` (PRAG's
      ``gc.collect()`` is timed apart and left out of the switch cost); generation;
  (b) the bare model, no adapters, same prompt (``closed``): generation;
  (c) ParamDB prag, one question at a time: switch = adapter rows from SQL + blobs from LMDB + decode +
      ``merge_flat`` + ``SidePath.set`` (+ ``clear`` after), i.e. ``generate_batch``'s ``load_adapters``
      stage, with a cold adapter cache (the store's cache emptied) and again warm; generation;
  (d) ParamDB batched: ``generate_batch``'s stages (retrieve, cold switch, one batched generation) over
      ``--batch-size`` questions at a time: questions/s.

Equal work: every flow generates exactly T new tokens per question (greedy; ``min_new_tokens = T`` suppresses
EOS and there is no newline stop), from the same prompt as ``generate(mode="prag")``. ParamDB's public
``generate``/``generate_batch`` stop at the first newline, so (c) and (d) call the same stages directly and the
API's own figures (natural stopping) are reported beside them as a cross-check. Retrieval (the same for every
RAG flow) is left out of switch and latency figures and kept in the throughput figures of (c) and (d); prag's
latency over closed is also given with retrieval counted (closed retrieves nothing), the figure a user sees.
With ``--json`` the last line of output is one JSON object.

``--shorten`` measures only what the short-answer pass adds to a prag answer: the public ``generate_batch``
(natural stopping), ``--batch-size`` questions at a time and one at a time, with ``short=True`` and
``short=False`` on the same questions, each twice in alternation; the figure is the median over the
questions of shorten seconds / (retrieve + load_adapters + generate seconds), from ``Answer.timings``, with
the ratio of the totals (``shorten_over_answer_total``) beside it.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peft_flow import PeftFlow, adapter_from_factors, base_copy, encode, export_peft_adapter, fixed_generate  # noqa: E402

from paramdb import ParamDB  # noqa: E402
from paramdb.knowledge import prompts  # noqa: E402
from paramdb.knowledge.inject import merge_flat  # noqa: E402
from paramdb.knowledge.lora import side_path  # noqa: E402
from paramdb.engine.adapters import factors_for_ids

DATA = Path(__file__).parent / "data" / "fictional.jsonl"


def log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def med(xs) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def load_items(n_docs: int) -> list[dict]:
    items = [json.loads(line) for line in open(DATA) if line.strip()]
    return items[:n_docs]


def questions_for(db: ParamDB, items: list[dict], n: int) -> list[str]:
    """The stored fictional documents' own questions; for other stores, one question per document."""
    stored = [it for it in items if it["id"] in db]
    qs = [q["q"] for it in stored for q in it["questions"]]
    if not qs:
        qs = [f"What does the text say about {' '.join(d.text.split()[:6])}?" for d in db.list(limit=max(n, 1))]
    if not qs:
        raise SystemExit("the store is empty")
    return [qs[i % len(qs)] for i in range(n)]


class Clock:
    def __init__(self, device):
        self.cuda = torch.device(device).type == "cuda"

    def __call__(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=6, help="documents to store (default 6; ~15 s each on CPU)")
    ap.add_argument("--questions", type=int, default=8)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=16, help="tokens generated per question, exactly")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--store", help="store folder to reuse or build (default: a temporary one)")
    ap.add_argument("--model", help="base model (default: the packaged SmolLM2-135M-Instruct)")
    ap.add_argument("--device", help="cpu / cuda (default: cuda if available)")
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    ap.add_argument("--shorten", action="store_true",
                    help="only measure the short-answer pass's share of a prag answer's latency")
    ap.add_argument("--json", action="store_true", help="last line: one JSON object with every figure")
    ap.add_argument("--plot", metavar="FILE.png", help="also draw the figures (needs paramdb[plot])")
    args = ap.parse_args()
    if args.plot:
        from paramdb.plots import check_target
        check_target(args.plot)                   # before the run, not after it
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    T, k = args.max_new_tokens, args.k

    tmp = Path(tempfile.mkdtemp(prefix="paramdb-bench-"))
    store = Path(args.store) if args.store else tmp / "store"
    try:
        t = time.perf_counter()
        with ParamDB.open(store, create=True, model=args.model, device=args.device) as db:
            items = load_items(args.docs)
            new = [{"id": it["id"], "text": it["text"]} for it in items if it["id"] not in db]
            if new:
                log(f"training {len(new)} document adapter(s) (slow on CPU) ...")
                db.insert(new, progress=lambda d, n: log(f"  inserted {d}/{n}"))
            build_s = time.perf_counter() - t
            if args.shorten:
                result = shorten_cost(db, questions_for(db, items, args.questions), k, args.batch_size)
                print(json.dumps(result) if args.json else json.dumps(result, indent=2))
                return
            result = run(db, questions_for(db, items, args.questions), k, T, args.batch_size, tmp / "peft")
            result["store"] = {"path": str(store) if args.store else None, "documents": len(db),
                               "trained_now": len(new), "build_s": round(build_s, 1)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print_table(result)
    if args.json:
        print(json.dumps(result))
    if args.plot:
        log(f"figure: {figure(result, args.plot)}")


def figure(r: dict, path) -> Path:
    """Switch cost (log scale), latency over the bare model, and batched throughput, from one run."""
    from paramdb.plots import Panel, write

    s = r["settings"]
    switch = Panel("adapter switch per question", ["PEFT flow", "ParamDB\ncold", "ParamDB\nwarm"],
                   {"ms": [r["switch_ms_peft"], r["switch_ms_paramdb"], r["switch_ms_paramdb_warm"]]},
                   ylabel="ms (log scale)", fmt="{:.1f}", log=True,
                   notes=[f"cold: {r['switch_speedup']:.1f}x faster than PEFT, warm: {r['switch_speedup_warm']:.0f}x"])
    latency = Panel(f"latency over closed ({s['new_tokens']} tokens)", ["ParamDB prag", "PEFT flow"],
                    {"ratio": [r["prag_over_closed_latency"], r["peft_over_closed_latency"]]},
                    ylabel="x bare model", fmt="{:.3f}")
    batch = Panel(f"throughput, batch of {s['batch_size']}", ["one at a time", "generate_batch"],
                  {"questions/s": [r["qps_single"], r["qps_batch"]]}, ylabel="questions/s", fmt="{:.2f}",
                  notes=[f"{r['batch_throughput_ratio']:.2f}x"])
    return write(path, [switch, latency, batch],
                 f"Generate: {s['questions']} questions, k={s['k']}, rank {s['rank']}, {s['device']}, "
                 f"{s['threads']} threads (medians)")


def run(db: ParamDB, questions: list[str], k: int, T: int, batch_size: int, peft_root: Path) -> dict:
    lm = db.handle.models.lm
    tok, device = lm.tokenizer, lm.device
    dtype = next(lm.model.parameters()).dtype
    sp = side_path(lm.model)
    names = [n for n, _ in sp.modules]
    scale, rank, alpha = db.config.training.scale, db.config.training.rank, db.config.training.alpha
    clock = Clock(device)
    short = db.config.augment.short_answers        # generate()'s prompt for this store

    # Every stored adapter as a PEFT directory on disk, as PRAG keeps them (export time not measured).
    docs = db.list()
    dirs = {}
    for i, (d, factors) in enumerate(zip(docs, factors_for_ids(db.handle.store, db.handle.models.lm, [d.id for d in docs]))):
        dirs[d.id] = export_peft_adapter(adapter_from_factors(names, factors), peft_root / f"doc{i}", rank, alpha)
    flow = PeftFlow(base_copy(lm.model), tok)
    state_before = {n: p.detach().clone() for n, p in lm.model.state_dict().items()}

    def switch_paramdb(ids, cold: bool):
        if cold:
            db.handle.store.cache.clear()
        t0 = clock()
        factors = merge_flat([factors_for_ids(db.handle.store, db.handle.models.lm, ids)], device, dtype, scale=scale)
        sp.set(factors, 1.0)
        return factors, (clock() - t0) * 1e3

    def clear_ms() -> float:
        t0 = clock()
        sp.clear()
        return (clock() - t0) * 1e3

    # Warm-up, untimed: first calls pay one-off costs (lazy imports, allocator, PEFT's first injection).
    q0 = questions[0]
    enc0 = encode(tok, [prompts.question_prompt(tok, q0, short=short)], device)
    ids0 = [h.id for h in db.query(q0, k=k)]
    flow.answer(prompts.question_prompt(tok, q0, short=short), [dirs[i] for i in ids0], T)
    fixed_generate(lm.model, tok, enc0, T)
    switch_paramdb(ids0, cold=True)
    fixed_generate(lm.model, tok, enc0, T)
    sp.clear()

    raw = {k_: [] for k_ in ("retrieve_ms", "peft_setup_ms", "peft_teardown_ms", "peft_gc_ms", "peft_generate_s",
                             "closed_generate_s", "paramdb_switch_cold_ms", "paramdb_switch_warm_ms",
                             "paramdb_generate_s", "api_load_adapters_cold_ms", "api_generate_s", "same_tokens",
                             "k_effective")}
    for qi, q in enumerate(questions):
        prompt = prompts.question_prompt(tok, q, short=short)   # prag's prompt is closed's (no passages)
        enc = encode(tok, [prompt], device)
        t0 = clock()
        hits = db.query(q, k=k)
        raw["retrieve_ms"].append((clock() - t0) * 1e3)
        ids = [h.id for h in hits]
        raw["k_effective"].append(len(ids))

        # (a) PRAG's PEFT flow
        a = flow.answer(prompt, [dirs[i] for i in ids], T)
        raw["peft_setup_ms"].append(a["setup_ms"])
        raw["peft_teardown_ms"].append(a["teardown_ms"])
        raw["peft_gc_ms"].append(a["gc_ms"])
        raw["peft_generate_s"].append(a["generate_s"])

        # (b) bare model
        t0 = clock()
        closed_ids = fixed_generate(lm.model, tok, enc, T)
        raw["closed_generate_s"].append(clock() - t0)
        assert closed_ids.shape[1] == T

        # (c) ParamDB, one question: cold switch, generate, clear; then the warm switch alone
        _, cold_ms = switch_paramdb(ids, cold=True)
        t0 = clock()
        ours = fixed_generate(lm.model, tok, enc, T)
        raw["paramdb_generate_s"].append(clock() - t0)
        raw["paramdb_switch_cold_ms"].append(cold_ms + clear_ms())
        _, warm_ms = switch_paramdb(ids, cold=False)
        raw["paramdb_switch_warm_ms"].append(warm_ms + clear_ms())
        raw["same_tokens"].append(ours[0].tolist() == a["ids"])
        assert ours.shape[1] == T and len(a["ids"]) == T

        # the public API (natural stopping at newline/EOS), cold cache: a cross-check of the stages
        db.handle.store.cache.clear()
        ans = db.generate(q, k=k, mode="prag", max_new_tokens=T, merge="sum")
        raw["api_load_adapters_cold_ms"].append(ans.timings["load_adapters"] * 1e3)
        raw["api_generate_s"].append(ans.timings["generate"])
        log(f"  question {qi + 1}/{len(questions)}: peft switch {a['setup_ms'] + a['teardown_ms']:.0f} ms, "
            f"paramdb switch {raw['paramdb_switch_cold_ms'][-1]:.1f} ms")

    # (d) batched: generate_batch's stages over batch_size questions at a time, cold cache, exactly T tokens
    batch_times, batch_sizes = [], []
    for start in range(0, len(questions), batch_size):
        chunk = questions[start:start + batch_size]
        db.handle.store.cache.clear()
        t0 = clock()
        hits = [db.query(q, k=k) for q in chunk]
        factors = merge_flat([factors_for_ids(db.handle.store, db.handle.models.lm, [h.id for h in hs]) for hs in hits], device, dtype, scale=scale)
        enc = encode(tok, [prompts.question_prompt(tok, q, short=short) for q in chunk], device)
        with sp.applied(factors, 1.0):
            out = fixed_generate(lm.model, tok, enc, T)
        batch_times.append(clock() - t0)
        batch_sizes.append(len(chunk))
        assert out.shape == (len(chunk), T)
    # the public generate_batch, natural stopping (cross-check)
    t0 = clock()
    for start in range(0, len(questions), batch_size):
        db.handle.store.cache.clear()
        db.generate_batch(questions[start:start + batch_size], k=k, mode="prag", max_new_tokens=T, merge="sum")
    api_batch_s = clock() - t0

    unchanged = all(torch.equal(p, state_before[n]) for n, p in lm.model.state_dict().items())

    # figures
    peft_switch = [s + t for s, t in zip(raw["peft_setup_ms"], raw["peft_teardown_ms"])]
    prag_latency = [s / 1e3 + g for s, g in zip(raw["paramdb_switch_cold_ms"], raw["paramdb_generate_s"])]
    peft_latency = [s / 1e3 + g for s, g in zip(peft_switch, raw["peft_generate_s"])]
    one_by_one_s = sum(r / 1e3 + s for r, s in zip(raw["retrieve_ms"], prag_latency))
    qps_single = len(questions) / one_by_one_s
    qps_batch = sum(batch_sizes) / sum(batch_times)
    closed = med(raw["closed_generate_s"])
    # prag pays for retrieval too (closed does not retrieve): the latency a user of prag mode sees.
    prag_with_retrieval = [r / 1e3 + p for r, p in zip(raw["retrieve_ms"], prag_latency)]
    out = {
        "switch_ms_peft": med(peft_switch),
        "switch_ms_paramdb": med(raw["paramdb_switch_cold_ms"]),
        "switch_ms_paramdb_warm": med(raw["paramdb_switch_warm_ms"]),
        "switch_speedup": med(peft_switch) / med(raw["paramdb_switch_cold_ms"]),
        "switch_speedup_warm": med(peft_switch) / med(raw["paramdb_switch_warm_ms"]),
        "prag_over_closed_latency": med(prag_latency) / closed,
        "prag_over_closed_latency_with_retrieval": med(prag_with_retrieval) / closed,
        "prag_over_closed_generate": med(raw["paramdb_generate_s"]) / closed,
        "peft_over_closed_latency": med(peft_latency) / closed,
        "peft_over_prag_latency": med(peft_latency) / med(prag_latency),
        "batch_throughput_ratio": qps_batch / qps_single,
        "qps_single": qps_single, "qps_batch": qps_batch,
        "qps_batch_api_natural_stop": len(questions) / api_batch_s,
        "peft_setup_ms": med(raw["peft_setup_ms"]), "peft_teardown_ms": med(raw["peft_teardown_ms"]),
        "peft_gc_ms": med(raw["peft_gc_ms"]), "peft_generate_s": med(raw["peft_generate_s"]),
        "closed_generate_s": closed, "paramdb_generate_s": med(raw["paramdb_generate_s"]),
        "retrieve_ms": med(raw["retrieve_ms"]),
        "api_load_adapters_cold_ms": med(raw["api_load_adapters_cold_ms"]),
        "api_generate_s_natural_stop": med(raw["api_generate_s"]),
        "same_tokens_peft_vs_paramdb": sum(raw["same_tokens"]) / len(questions),
        "base_weights_unchanged": unchanged,
        "settings": {"questions": len(questions), "k": k, "k_effective_median": med(raw["k_effective"]),
                     "new_tokens": T, "batch_size": batch_size, "rank": rank, "alpha": alpha,
                     "model": db.config.model, "device": str(device), "threads": torch.get_num_threads(),
                     "equalised": f"exactly {T} new tokens per question in every flow (greedy, "
                                  f"min_new_tokens=max_new_tokens suppresses EOS, no newline stop)"},
        "raw": raw,
    }
    return out


def shorten_cost(db: ParamDB, questions: list[str], k: int, batch_size: int) -> dict:
    """The short-answer pass's seconds against the rest of a prag answer's (Answer.timings, natural stop)."""
    db.generate_batch(questions[:batch_size], k=k, mode="prag")                # warm-up, untimed
    out = {}
    for label, size in (("batched", batch_size), ("one_at_a_time", 1)):
        share, short_s, rest_s = [], [], []
        for _ in range(2):
            for start in range(0, len(questions), size):
                chunk = questions[start:start + size]
                for a in db.generate_batch(chunk, k=k, mode="prag"):
                    rest = sum(v for key, v in a.timings.items() if key != "shorten")
                    share.append(a.timings["shorten"] / rest)
                    short_s.append(a.timings["shorten"])
                    rest_s.append(rest)
        out[label] = {"shorten_over_answer": round(med(share), 4),
                      "shorten_over_answer_total": round(sum(short_s) / sum(rest_s), 4),   # time-weighted
                      "shorten_s": round(med(short_s), 4),
                      "answer_s": round(med(rest_s), 4), "questions": len(questions)}
    out["settings"] = {"k": k, "batch_size": batch_size, "threads": torch.get_num_threads(),
                       "device": str(db.handle.models.lm.device)}
    return out


def print_table(r: dict) -> None:
    s = r["settings"]
    w = lambda *a: print(*a)  # noqa: E731
    w(f"\nParamDB vs PRAG's PEFT flow — {s['questions']} questions, k={s['k']} (effective "
      f"{s['k_effective_median']:g}), rank {s['rank']}, α {s['alpha']:g}, {s['device']}, "
      f"{s['threads']} thread(s), store of {r['store']['documents']} docs")
    w(f"Equal work: {s['equalised']}. Medians per question.\n")
    rows = [
        ("(a) PEFT flow", f"setup {r['peft_setup_ms']:.1f} + teardown {r['peft_teardown_ms']:.1f} ms "
                          f"(+ gc {r['peft_gc_ms']:.1f} ms, not counted)", f"{r['peft_generate_s']:.3f} s"),
        ("(b) bare model (closed)", "-", f"{r['closed_generate_s']:.3f} s"),
        ("(c) ParamDB prag, cold", f"{r['switch_ms_paramdb']:.2f} ms", f"{r['paramdb_generate_s']:.3f} s"),
        ("    ParamDB prag, warm", f"{r['switch_ms_paramdb_warm']:.2f} ms", ""),
        ("    generate() API, cold", f"{r['api_load_adapters_cold_ms']:.2f} ms",
         f"{r['api_generate_s_natural_stop']:.3f} s (natural stop)"),
    ]
    w(f"{'flow':26s} {'switch (adapters in + out)':58s} generation ({s['new_tokens']} tokens)")
    for name, sw, gen in rows:
        w(f"{name:26s} {sw:58s} {gen}")
    w(f"\n(d) batched, {s['batch_size']} questions per generation: {r['qps_batch']:.2f} q/s "
      f"vs {r['qps_single']:.2f} q/s one at a time (retrieval + cold switch + generation); "
      f"public generate_batch, natural stop: {r['qps_batch_api_natural_stop']:.2f} q/s")
    w(f"\nswitch speedup (PEFT setup+teardown / ParamDB cold switch): {r['switch_speedup']:.1f}x "
      f"(warm: {r['switch_speedup_warm']:.1f}x)")
    w(f"prag over closed latency (switch + generation vs generation): {r['prag_over_closed_latency']:.3f} "
      f"(generation only {r['prag_over_closed_generate']:.3f}; retrieval + switch + generation "
      f"{r['prag_over_closed_latency_with_retrieval']:.3f}, retrieval {r['retrieve_ms']:.1f} ms); "
      f"PEFT flow over closed: {r['peft_over_closed_latency']:.3f}")
    w(f"batch throughput ratio (d / c): {r['batch_throughput_ratio']:.2f}")
    w(f"same generated tokens, PEFT vs ParamDB: {r['same_tokens_peft_vs_paramdb']:.0%} of questions; "
      f"base weights unchanged: {r['base_weights_unchanged']}; store build {r['store']['build_s']} s "
      f"({r['store']['trained_now']} trained now)")


if __name__ == "__main__":
    main()
