"""How insert scales: its memory with the corpus size, and its speed with Ray workers against the single writer.

Run through tools/bench_insert.py (its options are documented there):

    python tools/bench_insert.py --memory-check [--memory-counts 100,1000] [--json]
    python tools/bench_insert.py --ray-workers 1,2 [--tiny] [--docs N] [--batch-size B] [--writer-docs W] [--json]

``--memory-check``: streamed inserts (a generator) of 100 and 1,000 short documents with the tiny random test
model (tests/conftest.py ``make_tiny_lm``, training epochs 1, rank 2), each in its own subprocess; the peak RSS of
each child (``os.wait4`` rusage) and their ratio (target: ≤ 1.10). Each child is this file run as
``python tools/bench_insert_scale.py --memory-child N [--batch-size B]``, so the parent's imports and model do not
count in the child's peak.

``--ray-workers 1,2``: ``db.insert(executor="ray")`` of the same N documents into a fresh store with 1, then 2
Ray workers (one local Ray instance with as many CPU slots as the largest count; one torch thread per worker),
docs/min for each, timed from the first batch sent to the last committed (worker start-up reported apart);
``--tiny`` uses the tiny random test model instead of the default one. Then the single writer's ceiling:
the engine's ``commit_batch`` alone, on precomputed random adapters shaped for the DEFAULT model (what a real store writes)
and unit embeddings, ``--writer-docs`` documents in batches of B: docs/s that no number of workers can exceed.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import ROOT, _tiny_lm, fictional_docs, log, maxrss_mb  # noqa: E402


# ---------------------------------------------------------------- memory check (tiny model, subprocesses)
def memory_child(n: int, batch_size: int | None) -> None:
    import torch

    torch.set_num_threads(1)
    from paramdb import ParamDB

    def stream():
        for i in range(n):
            yield {"id": f"m{i}", "text": f"Record {i} says that crate {i % 97} of the depot holds {i * 7 % 13} "
                                          f"lamps and was shipped in year {1900 + i % 120}."}

    lm = _tiny_lm()
    tmp = Path(tempfile.mkdtemp(prefix="paramdb-memcheck-"))
    try:
        t0 = time.perf_counter()
        with ParamDB.open(tmp / "store", create=True, model=lm, training={"epochs": 1, "rank": 2}) as db:
            kw = {"batch_size": batch_size} if batch_size else {}
            ids = db.insert(stream(), **kw)
            count = len(db)
        secs = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert len(ids) == n == count, (len(ids), n, count)
    print(json.dumps({"n": n, "inserted": count, "seconds": round(secs, 1),
                      "self_maxrss_mb": round(maxrss_mb(resource.getrusage(resource.RUSAGE_SELF)), 1)}))


def memory_check(counts: list[int], batch_size: int | None) -> dict:
    out = {}
    for n in counts:
        with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child", str(n)]
            if batch_size:
                cmd += ["--batch-size", str(batch_size)]
            log(f"[memory] inserting {n} docs (streamed) in a subprocess ...")
            proc = subprocess.Popen(cmd, stdout=fo, stderr=fe, cwd=str(ROOT))
            _, status, ru = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            fo.seek(0)
            fe.seek(0)
            if proc.returncode != 0:
                raise SystemExit(f"memory child ({n} docs) failed, rc {proc.returncode}:\n{fe.read()[-3000:]}")
            child = json.loads(fo.read().strip().splitlines()[-1])
        child["peak_rss_mb"] = round(maxrss_mb(ru), 1)
        log(f"[memory] {n} docs: peak RSS {child['peak_rss_mb']:.0f} MB, {child['seconds']} s")
        out[n] = child
    small, big = counts[0], counts[-1]
    ratio = out[big]["peak_rss_mb"] / out[small]["peak_rss_mb"]
    return {"memory_counts": counts, "peak_rss_mb_small": out[small]["peak_rss_mb"],
            "peak_rss_mb_large": out[big]["peak_rss_mb"],
            f"peak_rss_mb_{small}": out[small]["peak_rss_mb"], f"peak_rss_mb_{big}": out[big]["peak_rss_mb"],
            "memory_ratio": round(ratio, 3), "memory_within_10pct": ratio <= 1.10,
            "memory_seconds": {str(n): out[n]["seconds"] for n in counts}}

def print_memory_table(r: dict) -> None:
    counts = r["memory_counts"]
    print("memory check (tiny model, streamed insert, epochs 1, rank 2):")
    for n in counts:
        print(f"  {n:6d} docs: peak RSS {r[f'peak_rss_mb_{n}']:8.1f} MB  ({r['memory_seconds'][str(n)]} s)")
    print(f"  ratio {counts[-1]}/{counts[0]}: {r['memory_ratio']:.3f} "
          f"({'within' if r['memory_within_10pct'] else 'NOT within'} 10%)")


# ---------------------------------------------------------------- Ray: workers scale, the writer does not
def writer_ceiling(n_docs: int, batch_size: int) -> dict:
    """docs/s of the engine's ``commit_batch`` alone (encode, LMDB, SQL row, index) with default-model-shaped adapters."""
    import numpy as np

    from paramdb import ParamDB
    from paramdb.engine.commit import commit_batch
    from paramdb.knowledge.lora import side_path, tensor_names
    from paramdb.knowledge.models import load_model
    from paramdb.types import Document

    lm = load_model(None, "cpu")
    shapes = side_path(lm.model).shapes
    tmp = Path(tempfile.mkdtemp(prefix="paramdb-bench-writer-"))
    rng = np.random.default_rng(0)
    try:
        with ParamDB.create(tmp / "store", model=lm) as db:
            r = db.config.training.rank
            adapters = [{name: rng.standard_normal(shape, dtype=np.float32) for t in shapes
                         for name, shape in zip(tensor_names(t.name), ((r, t.in_features), (t.out_features, r)))}
                        for _ in range(batch_size)]
            vectors = rng.standard_normal((batch_size, db.config.embedding_dim), dtype=np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            adapter_mb = sum(a.size for a in adapters[0].values()) * 2 / 2**20
            t0 = time.perf_counter()
            for start in range(0, n_docs, batch_size):
                batch = [Document(text=f"Writer benchmark document {i}.", id=f"w{i}")
                         for i in range(start, min(start + batch_size, n_docs))]
                commit_batch(db.handle.store, batch, vectors[:len(batch)], adapters[:len(batch)])
            seconds = time.perf_counter() - t0
            assert len(db) == n_docs
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"[writer] {n_docs} docs in {seconds:.2f} s: {n_docs / seconds:.1f} docs/s ({adapter_mb:.2f} MB/adapter)")
    return {"writer_docs": n_docs, "writer_seconds": round(seconds, 3),
            "writer_docs_per_s": round(n_docs / seconds, 1), "writer_adapter_mb": round(adapter_mb, 2)}


def ray_benchmark(args) -> dict:
    import ray
    import torch

    from paramdb import ParamDB

    counts = [int(x) for x in args.ray_workers.split(",")]
    batch_size = args.batch_size or inspect.signature(ParamDB.insert).parameters["batch_size"].default
    items = fictional_docs(args.docs)
    docs = [{"id": it["id"], "text": it["text"]} for it in items]
    tmp = Path(tempfile.mkdtemp(prefix="paramdb-bench-ray-"))
    torch.set_num_threads(1)
    try:
        model = args.model
        if args.tiny:
            lm = _tiny_lm()
            model = str(tmp / "tiny-llama")
            lm.model.save_pretrained(model)
            lm.tokenizer.save_pretrained(model)
        ray.init(num_cpus=max(counts), include_dashboard=False, log_to_driver=False)
        runs = {}
        for n in counts:
            overrides = {"epochs": args.epochs} if args.epochs else None
            with ParamDB.open(tmp / f"store-{n}", create=True, model=model, training=overrides,
                              device=args.device) as db:
                load = os.getloadavg()[0]
                t0 = time.perf_counter()
                report = db.insert(docs, batch_size=batch_size, executor="ray", ray_workers=n)
                total = time.perf_counter() - t0
                assert len(report) == len(docs) == len(db) and not report.failed, report
            run_s = report.stats["seconds"]
            runs[n] = {"workers": n, "seconds": run_s, "docs_per_min": round(60 * len(docs) / run_s, 2),
                       "startup_s": round(total - run_s, 1),
                       "docs_per_min_with_startup": round(60 * len(docs) / total, 2),
                       "worker_busy_s": report.stats["worker_seconds"], "loadavg_before": round(load, 2)}
            log(f"[ray] {n} worker(s): {len(docs)} docs in {run_s:.1f} s = {runs[n]['docs_per_min']:.2f} docs/min "
                f"(+{runs[n]['startup_s']} s start-up)")
        ray.shutdown()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    first = runs[counts[0]]["docs_per_min"]
    name = "tiny random test model" if args.tiny else (args.model or "SmolLM2-135M-Instruct (default)")
    return {"ray_model": name,
            "docs": len(docs), "batch_size": batch_size, "cpus": os.cpu_count(),
            "ray": {str(n): {**r, "speedup": round(r["docs_per_min"] / first, 2)} for n, r in runs.items()},
            **writer_ceiling(args.writer_docs, batch_size)}


def print_ray_table(r: dict) -> None:
    print(f"Ray insert: {r['docs']} fictional docs, batch size {r['batch_size']}, model {r['ray_model']}, "
          f"{r['cpus']} CPUs on this machine")
    print(f"{'workers':>8s} {'seconds':>9s} {'docs/min':>9s} {'speedup':>8s} {'start-up s':>11s} "
          f"{'worker busy s':>14s} {'load before':>12s}")
    for n, x in r["ray"].items():
        print(f"{n:>8s} {x['seconds']:9.1f} {x['docs_per_min']:9.2f} {x['speedup']:7.2f}x {x['startup_s']:11.1f} "
              f"{x['worker_busy_s']:14.1f} {x['loadavg_before']:12.2f}")
    print(f"single writer ceiling (commit_batch alone, {r['writer_adapter_mb']:.2f} MB default-model adapters, "
          f"{r['writer_docs']} docs): {r['writer_docs_per_s']:.1f} docs/s = {60 * r['writer_docs_per_s']:.0f} docs/min")


def figure(r: dict, path) -> Path:
    """The figure of a --ray-workers result (per worker count) or a --memory-check one (per document count)."""
    from paramdb.plots import Panel, write

    if "ray" in r:
        ns = list(r["ray"])
        return write(path, [Panel("docs/min by Ray workers", ns, {"docs/min": [r["ray"][n]["docs_per_min"] for n in ns]},
                                  ylabel="docs/min", fmt="{:.1f}",
                                  notes=[f"speedup {r['ray'][ns[-1]]['speedup']:.2f}x with {ns[-1]} workers; "
                                         f"writer ceiling {r['writer_docs_per_s']:.0f} docs/s"])],
                     f"Ray insert: {r['docs']} docs, batch {r['batch_size']}, {r['ray_model']}")
    counts = r.get("memory_counts") or sorted(int(k.rsplit("_", 1)[1]) for k in r
                                              if k.startswith("peak_rss_mb_") and k.rsplit("_", 1)[1].isdigit())
    return write(path, [Panel("peak RSS, streamed insert", [str(n) for n in counts],
                              {"MB": [r[f"peak_rss_mb_{n}"] for n in counts]}, ylabel="MB", fmt="{:.0f}",
                              notes=[f"ratio {r['memory_ratio']:.2f}"])], "Insert memory by corpus size")


def main() -> None:
    """Only the --memory-check child: its peak RSS is read by the parent, which runs this file."""
    ap = argparse.ArgumentParser(description="one --memory-check child (run by tools/bench_insert.py --memory-check)")
    ap.add_argument("--memory-child", type=int, required=True, metavar="N", help="documents to insert, streamed")
    ap.add_argument("--batch-size", type=int, default=None, help="insert batch size (default: insert's default)")
    args = ap.parse_args()
    memory_child(args.memory_child, args.batch_size)


if __name__ == "__main__":
    main()
