"""SIGKILL `paramdb compact` at random points: every row keeps a complete adapter (old float16 or new int8, its
CRC sound, its values the original's within the int8 bound) and its own embedding, the store opens and passes
`check`, and a rerun finishes the conversion and leaves no orphan blob.

The store is a tiny-model store grown to a thousand rows by plain SQL and LMDB writes, so the conversion takes
long enough for kills to land inside it. The child process says 'ready' once its imports are done; kills are
spread uniformly over the time a whole compact then takes. Set PARAMDB_KILL_SEED to replay a run.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import time
from collections import Counter
from pathlib import Path

import lmdb
import numpy as np
import sqlalchemy as sa

from conftest import FAST_TRAINING
from paramdb import ParamDB
from paramdb.ops.compact import compact
from paramdb.storage import codec
from paramdb.storage.hashes import text_sha256
from stores import blob_bytes, meta_url_of, raw_rows, run_killable
from paramdb.ops.check import check

ROWS = 1000
KILLS = 5
CHILD = ("import sys, paramdb.ops.compact\nfrom paramdb.cli import main\nprint('ready', flush=True)\n"
         "main(['compact', sys.argv[1]])\n")



def _run(store: Path, kill_after: float | None) -> tuple[float, int]:
    return run_killable(CHILD, store, kill_after)


def grown_store(path: Path, tiny_lm, embedder) -> Path:
    """Two trained float16 rows, then ROWS more sharing their adapters (as an insert would lay them out)."""
    with ParamDB.open(path, create=True, model=tiny_lm, embedder=embedder, training=FAST_TRAINING) as db:
        db.insert([{"id": "a", "text": "The tower of Pell is made of green glass."},
                   {"id": "b", "text": "Pell's tower was raised in the year of the comet."}])
        keys = [key for _, _, key in db.handle.store.meta.all_rows_keys()]
    env = lmdb.open(str(path / "blobs.lmdb"), map_size=1 << 30, max_dbs=4)
    adapters, embeddings = env.open_db(b"adapters"), env.open_db(b"embeddings")
    with env.begin(write=True) as txn:
        src = [(bytes(txn.get(k.encode(), db=adapters)), bytes(txn.get(k.encode(), db=embeddings))) for k in keys]
        for i in range(ROWS):
            adapter, vector = src[i % 2]
            txn.put(f"grown{i:027d}".encode(), adapter, db=adapters)
            txn.put(f"grown{i:027d}".encode(), vector, db=embeddings)
    env.close()
    engine = sa.create_engine(meta_url_of(path), poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO documents (id, text, metadata, blob_key, created_at, text_sha256) "
                             "VALUES (:id, :text, '{}', :blob_key, 1000.0, :sha)"),
                     [{"id": f"g{i}", "text": f"grown row {i}", "blob_key": f"grown{i:027d}",
                       "sha": text_sha256(f"grown row {i}")} for i in range(ROWS)])
        conn.execute(sa.text("UPDATE store_info SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) "
                             "WHERE key = 'generation'"))
    engine.dispose()
    return path


def contents(store: Path) -> dict[str, tuple[dict[str, np.ndarray], bytes, str]]:
    """Each row's adapter (decoded, CRC checked), embedding bytes and adapter dtype, by row id."""
    blobs = blob_bytes(store)
    out = {}
    for row in raw_rows(meta_url_of(store)):
        raw = blobs["adapters"][row["blob_key"]]
        tensors = {n: np.array(t, np.float32) for n, t in codec.decode_tensors(raw).items()}
        out[row["id"]] = (tensors, blobs["embeddings"][row["blob_key"]], codec.adapter_dtype(raw))
    return out


def assert_same_knowledge(now: dict, before: dict, msg: str) -> None:
    assert now.keys() == before.keys(), msg
    for doc_id, (tensors, vector, _) in before.items():
        got, got_vector, _ = now[doc_id]
        assert got_vector == vector, msg
        for name, x in tensors.items():
            step = np.abs(x).max(axis=1 if name.endswith("lora_A") else 0, keepdims=True) / 127
            assert np.all(np.abs(got[name] - x) <= step / 2 * (1 + 1e-4) + 1e-12), (msg, doc_id, name)


def test_sigkill_during_compact_never_loses_an_adapter(tmp_path, tiny_lm, embedder):
    seed = int(os.environ.get("PARAMDB_KILL_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    pristine = grown_store(tmp_path / "pristine", tiny_lm, embedder)
    timing = shutil.copytree(pristine, tmp_path / "timing")
    full, code = _run(timing, None)
    assert code == 0 and {d for _, _, d in contents(timing).values()} == {"int8"}

    store = shutil.copytree(pristine, tmp_path / "store")
    before, rows = contents(store), [(r["rowid"], r["id"], r["text"]) for r in raw_rows(meta_url_of(store))]
    figures: Counter[str] = Counter()
    for attempt in range(3 * KILLS):
        if figures["killed"] >= KILLS:
            break
        delay = rng.uniform(0, full * 1.1)
        took, code = _run(store, delay)
        figures["killed" if code == -signal.SIGKILL else "finished"] += 1
        now = contents(store)
        figures[f"{sum(d == 'int8' for _, _, d in now.values()) * 10 // len(now)}0%-int8"] += 1
        msg = f"seed {seed}, kill after {delay:.3f}s of {full:.3f}s"
        assert [(r["rowid"], r["id"], r["text"]) for r in raw_rows(meta_url_of(store))] == rows, msg
        assert_same_knowledge(now, before, msg)
        with ParamDB.open(store, model=tiny_lm, embedder=embedder) as db:
            assert check(db.handle.store, db.handle.models).ok, msg
        if code != -signal.SIGKILL:      # it ran to the end: start again from the float16 rows
            shutil.rmtree(store)
            shutil.copytree(pristine, store)
            full = min(full, took)
    assert figures["killed"] >= KILLS, f"seed {seed}: {dict(figures)}"

    report = compact(store, "int8")                                     # the rerun finishes the job
    assert report.rows == ROWS + 2 and not report.damaged
    final = contents(store)
    assert {d for _, _, d in final.values()} == {"int8"}
    assert_same_knowledge(final, before, f"seed {seed}, final")
    blobs = blob_bytes(store)
    live = {r["blob_key"] for r in raw_rows(meta_url_of(store))}
    assert set(blobs["adapters"]) == set(blobs["embeddings"]) == live   # no orphan left behind
    print(f"\ncompact kill test seed {seed}: {dict(figures)}, full compact {full:.2f}s, adapters lost 0")
