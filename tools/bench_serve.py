"""`paramdb serve` under load: cross-request batching against one request at a time, through HTTP.

    python tools/bench_serve.py [--model PATH] [--docs tools/data/fictional.jsonl] [--clients 16]
                                [--per-client 8] [--json]

Loopback only (the server binds 127.0.0.1 on a free port) and bounded: a fixed number of requests per phase,
``--time-limit`` seconds for building the store and again for the serving phases (a phase still running
then is cut short and the run fails).

1. A new store is made with ``paramdb init`` and the documents of ``--docs`` (default: the 20 invented-fact
   documents of tools/data/fictional.jsonl; ``--limit-docs N``: the first N) inserted with ``paramdb insert``
   (trained); the questions are in the same file. ``paramdb serve`` then starts on it in its own process
   (default settings, ``--batch-window-ms`` and ``--max-batch`` as given); /health is polled until it is up.
2. Throughput: ``clients`` x ``per-client`` questions (the file's questions, cycled), prag, k=3, short
   answers, are first asked one request at a time, then by ``clients`` concurrent clients, each asking its
   ``per-client`` questions in turn. ``throughput_ratio`` is concurrent questions/s over sequential ones; p50
   and p95 are the concurrent phase's latencies. ``--full`` asks every question for its whole generation
   (``short: false``), which leaves the short-answer pass out of both phases. ``prag_closed_ratio``: the median latency of the first 16
   questions asked alone in prag mode over the same 16 asked alone in closed mode.
3. Insert under load: ``writers`` writers each POST ``writer-docs`` new documents to /documents, one per
   request (deferred where this ParamDB has it, so the server's background refine trains them meanwhile),
   while ``load-clients`` clients keep answering. ``errors`` counts every non-2xx response of the run;
   ``rows_lost`` the ids a writer was told were stored that GET /documents/{id} then does not find.
4. SIGTERM stops the server; its exit status and how long it took are reported.

With ``--json`` the last line of output is one JSON object (throughput_ratio, p50_ms, p95_ms, errors,
rows_lost, ...). Progress goes to stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DOCS = ROOT / "tools" / "data" / "fictional.jsonl"
PARAMDB = [sys.executable, "-c", "from paramdb.cli import main; main(prog_name='paramdb')"]


def log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


class OutOfTime(RuntimeError):
    pass


class Budget:
    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def check(self, what: str) -> None:
        if self.left() <= 0:
            raise OutOfTime(f"the time limit ran out during {what}")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_docs(path: Path, limit: int | None = None) -> tuple[list[dict], list[tuple[str, list[str]]]]:
    docs, questions = [], []
    for line in path.read_text().splitlines():
        if line.strip() and (limit is None or len(docs) < limit):
            row = json.loads(line)
            docs.append({"id": row["id"], "text": row["text"]})
            questions += [(q["q"], q["a"]) for q in row.get("questions", [])]
    if not questions:
        raise SystemExit(f"{path}: no questions (each line needs \"questions\": [{{\"q\", \"a\"}}])")
    return docs, questions


def run_cli(*args: str, timeout: float) -> None:
    r = subprocess.run([*PARAMDB, *args], capture_output=True, text=True, timeout=max(1.0, timeout))
    if r.returncode:
        raise SystemExit(f"paramdb {' '.join(args)} failed: {r.stderr.strip()}")


class Tally:
    """Every response of the run: latencies of answers, and each non-2xx counted as an error."""

    def __init__(self):
        self.lock, self.errors, self.messages = threading.Lock(), 0, []

    def bad(self, what: str) -> None:
        with self.lock:
            self.errors += 1
            if len(self.messages) < 5:
                self.messages.append(what)


SHORT = True     # --full: every request asks for the whole generation (short=false), skipping the extraction


def ask(c: httpx.Client, tally: Tally, question: str, model: str = "paramdb-prag", k: int = 3) -> tuple[float, str]:
    t0 = time.perf_counter()
    try:
        r = c.post("/v1/chat/completions", json={"model": model, "k": k, "short": SHORT,
                                                 "messages": [{"role": "user", "content": question}]})
    except httpx.HTTPError as exc:
        tally.bad(f"{type(exc).__name__}: {exc}")
        return time.perf_counter() - t0, ""
    dt = time.perf_counter() - t0
    if r.status_code != 200:
        tally.bad(f"{r.status_code} {r.text[:200]}")
        return dt, ""
    return dt, r.json()["choices"][0]["message"]["content"]


def concurrent(base: str, tally: Tally, per_client: list[list[str]], budget: Budget) -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock, barrier = threading.Lock(), threading.Barrier(len(per_client) + 1)

    def client(questions: list[str]) -> None:
        with httpx.Client(base_url=base, timeout=max(1.0, budget.left())) as c:
            barrier.wait()
            for q in questions:
                dt, _ = ask(c, tally, q)
                with lock:
                    latencies.append(dt)

    threads = [threading.Thread(target=client, args=(qs,), daemon=True) for qs in per_client]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join(max(0.0, budget.left()))
    budget.check("the concurrent phase")
    return time.perf_counter() - t0, latencies


def insert_under_load(base: str, tally: Tally, questions: list[str], writers: int, per_writer: int,
                      load_clients: int, budget: Budget) -> dict:
    stored: list[str] = []
    insert_latencies: list[float] = []
    answered = [0]
    lock, done = threading.Lock(), threading.Event()

    def writer(w: int) -> None:
        with httpx.Client(base_url=base, timeout=max(1.0, budget.left())) as c:
            for i in range(per_writer):
                doc = {"id": f"load-{w}-{i}", "text": f"The harbour of Quessa-{w}{i} was founded by the navigator "
                                                      f"Orla Venn-{w}{i} in {1700 + 10 * w + i}.",
                       "metadata": {"bench": "insert-under-load"}}
                t0 = time.perf_counter()
                try:
                    r = c.post("/documents", json=[doc])
                except httpx.HTTPError as exc:
                    tally.bad(f"insert: {type(exc).__name__}: {exc}")
                    continue
                if r.status_code != 200:
                    tally.bad(f"insert: {r.status_code} {r.text[:200]}")
                    continue
                with lock:
                    stored.extend(r.json()["ids"])
                    insert_latencies.append(time.perf_counter() - t0)

    def answerer(j: int) -> None:
        with httpx.Client(base_url=base, timeout=max(1.0, budget.left())) as c:
            n = j
            while not done.is_set() and budget.left() > 0:
                ask(c, tally, questions[n % len(questions)])
                n += load_clients
                with lock:
                    answered[0] += 1

    answerers = [threading.Thread(target=answerer, args=(j,), daemon=True) for j in range(load_clients)]
    writing = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(writers)]
    t0 = time.perf_counter()
    for t in answerers + writing:
        t.start()
    for t in writing:
        t.join(max(0.0, budget.left()))
    done.set()
    for t in answerers:
        t.join(max(0.0, budget.left()))
    budget.check("the insert-under-load phase")
    seconds = time.perf_counter() - t0
    lost = []
    with httpx.Client(base_url=base, timeout=60) as c:
        for doc_id in stored:
            if c.get(f"/documents/{doc_id}").status_code != 200:
                lost.append(doc_id)
        kinds = c.get("/stats").json()["adapters"]
    return {"inserted": len(stored), "expected": writers * per_writer, "rows_lost": len(lost),
            "insert_p50_ms": round(1000 * statistics.median(insert_latencies), 1) if insert_latencies else None,
            "answered_meanwhile": answered[0], "seconds": round(seconds, 1), "adapters_after": kinds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model folder or GGUF (default: the packaged SmolLM2-135M)")
    ap.add_argument("--docs", type=Path, default=DEFAULT_DOCS, help="JSONL: id, text, questions [{q, a}]")
    ap.add_argument("--limit-docs", type=int, default=None, help="use only the first N documents (and their questions)")
    ap.add_argument("--store", type=Path, default=None,
                    help="reuse (or make) this store instead of a temporary one; the insert phase adds to it")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--per-client", type=int, default=8)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--batch-window-ms", type=float, default=5.0)
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--writers", type=int, default=2)
    ap.add_argument("--writer-docs", type=int, default=4, help="documents each writer inserts")
    ap.add_argument("--load-clients", type=int, default=8)
    ap.add_argument("--time-limit", type=float, default=900.0, help="seconds for the whole run")
    ap.add_argument("--full", action="store_true",
                    help="ask for whole generations (short=false): the batching of generation alone, without the "
                         "short-answer pass")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    global SHORT
    SHORT = not args.full
    for name in ("clients", "per_client", "k", "max_batch", "writers", "writer_docs", "load_clients"):
        if not 1 <= getattr(args, name) <= 256:
            raise SystemExit(f"--{name.replace('_', '-')} must be between 1 and 256")
    budget, started = Budget(args.time_limit), time.monotonic()
    docs, qa = load_docs(args.docs, args.limit_docs)
    tmp = None
    store = args.store
    if store is None:
        tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
        store = tmp / "store"
    try:
        t0 = time.monotonic()
        if not store.exists():
            log(f"building the store: {len(docs)} documents, trained")
            run_cli("init", str(store), *(["--model", args.model] if args.model else []), timeout=budget.left())
            docs_file = (tmp or store.parent) / "bench-serve-docs.jsonl"
            docs_file.write_text("".join(json.dumps(d) + "\n" for d in docs))
            run_cli("insert", str(store), str(docs_file), timeout=budget.left())
        build_s = time.monotonic() - t0
        budget = Budget(args.time_limit)          # the limit bounds the serving phases; the build had its own
        result = bench(args, store, qa, budget)
        result |= {"store_build_s": round(build_s, 1), "seconds": round(time.monotonic() - started, 1),
                   "docs": len(docs), "model": args.model or "packaged SmolLM2-135M-Instruct",
                   "hardware": f"{os.cpu_count()}-core {platform.machine()} CPU", "date": time.strftime("%Y-%m-%d")}
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")


def bench(args, store: Path, qa: list[tuple[str, list[str]]], budget: Budget) -> dict:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([*PARAMDB, "serve", str(store), "--host", "127.0.0.1", "--port", str(port),
                               "--batch-window-ms", str(args.batch_window_ms), "--max-batch", str(args.max_batch),
                               "--max-queue", str(max(64, 2 * args.clients + args.writers + args.load_clients)),
                               "--timeout", str(max(60, int(args.time_limit))), "--log-level", "warning"],
                              stdout=sys.stderr)                  # stdout is for the result alone
    tally = Tally()
    try:
        while True:
            if server.poll() is not None:
                raise SystemExit(f"paramdb serve exited with {server.returncode}")
            budget.check("server start-up")
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        n = args.clients * args.per_client
        questions = [qa[i % len(qa)][0] for i in range(n)]
        aliases = [qa[i % len(qa)][1] for i in range(n)]
        with httpx.Client(base_url=base, timeout=max(1.0, budget.left())) as c:
            for q in questions[:2]:
                ask(c, tally, q)                                     # warm-up: caches, first-call costs
            log(f"sequential: {n} questions, prag k={args.k}, one request at a time")
            seq_lat, correct = [], 0
            t0 = time.perf_counter()
            for q, a in zip(questions, aliases):
                budget.check("the sequential phase")
                dt, text = ask(c, tally, q, k=args.k)
                seq_lat.append(dt)
                correct += any(x.lower() in text.lower() for x in a)
            seq_s = time.perf_counter() - t0
            closed_lat = []
            for q in questions[:16]:
                budget.check("the closed-book phase")
                closed_lat.append(ask(c, tally, q, model="paramdb-closed", k=args.k)[0])
            before = c.get("/stats").json()["server"]
        log(f"concurrent: {args.clients} clients x {args.per_client} questions")
        per_client = [questions[i * args.per_client:(i + 1) * args.per_client] for i in range(args.clients)]
        conc_s, conc_lat = concurrent(base, tally, per_client, budget)
        with httpx.Client(base_url=base, timeout=60) as c:
            after = c.get("/stats").json()["server"]
        log(f"insert under load: {args.writers} writers x {args.writer_docs} documents, "
            f"{args.load_clients} clients answering")
        load = insert_under_load(base, tally, questions, args.writers, args.writer_docs, args.load_clients, budget)
    finally:
        t0 = time.monotonic()
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(120)
        except subprocess.TimeoutExpired:
            server.kill()
            code = server.wait()
        stop_s = time.monotonic() - t0
    batches = after["batches"] - before["batches"]
    return {"throughput_ratio": round((n / conc_s) / (n / seq_s), 2),
            "p50_ms": round(1000 * percentile(conc_lat, 50), 1),
            "p95_ms": round(1000 * percentile(conc_lat, 95), 1), "errors": tally.errors,
            "rows_lost": load["rows_lost"],
            "sequential_qps": round(n / seq_s, 3), "concurrent_qps": round(n / conc_s, 3),
            "sequential_p50_ms": round(1000 * percentile(seq_lat, 50), 1),
            "prag_closed_ratio": round(statistics.median(seq_lat[:16]) / statistics.median(closed_lat), 3),
            "prag_correct": f"{correct}/{n}", "batches": batches,
            "mean_batch": round((after["answered"] - before["answered"]) / batches, 2) if batches else None,
            "largest_batch": after["largest_batch"], "clients": args.clients, "per_client": args.per_client,
            "k": args.k, "short": SHORT, "batch_window_ms": args.batch_window_ms, "max_batch": args.max_batch,
            "insert_under_load": load, "server_exit": code, "server_stop_s": round(stop_s, 1),
            "error_samples": tally.messages}


if __name__ == "__main__":
    try:
        main()
    except OutOfTime as exc:
        raise SystemExit(f"bench_serve: {exc} (raise --time-limit or lower the counts)")
