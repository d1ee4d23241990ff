"""SIGKILL `paramdb migrate` at random points: the store always holds exactly its committed rows, it either
opens (the kill came after the marker) or says to migrate, and a rerun completes with every adapter intact.

The store is the format-1 fixture grown to a few thousand rows (by plain SQL and LMDB writes, as format 1
lays them out) so the migration's steps take long enough for kills to land inside them. The child process
says 'ready' once its imports are done; kills are spread uniformly over the time a full migrate then takes.
Set PARAMDB_KILL_SEED to replay a run.
"""
from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import lmdb
import pytest
import sqlalchemy as sa

from conftest import META_BACKENDS, pg_schema_url
from paramdb import ParamDB
from paramdb.config import FORMAT_VERSION
from paramdb.errors import FormatError
from paramdb.ops.migrate import migrate
from paramdb.storage import schema
from paramdb.storage.hashes import text_sha256
from stores import FORMAT1_EXPECTED, blob_sha256, format1_copy, format1_on, meta_url_of, raw_rows, run_killable

EXTRA_ROWS = 1500
KILLS = {"sqlite": 6, "postgresql": 3}
CHILD = ("import sys, paramdb.ops.migrate\nfrom paramdb.cli import main\nprint('ready', flush=True)\n"
         "main(['migrate', sys.argv[1]])\n")


def grow(store: Path, n: int) -> None:
    """Add n format-1 rows (and their blobs) to a format-1 store, as ParamDB 0.1.0 would have written them."""
    first = FORMAT1_EXPECTED["rows"][0]["blob_key"]
    env = lmdb.open(str(store / "blobs.lmdb"), map_size=1 << 30, max_dbs=4)
    adapters, embeddings = env.open_db(b"adapters"), env.open_db(b"embeddings")
    with env.begin(write=True) as txn:
        adapter, vector = bytes(txn.get(first.encode(), db=adapters)), bytes(txn.get(first.encode(), db=embeddings))
        for i in range(n):
            key = f"grown{i:027d}".encode()
            txn.put(key, adapter, db=adapters)
            txn.put(key, vector, db=embeddings)
    env.close()
    engine = sa.create_engine(meta_url_of(store), poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO documents (id, text, metadata, blob_key, created_at) "
                             "VALUES (:id, :text, :metadata, :blob_key, :created_at)"),
                     [{"id": f"g{i}", "text": f"grown document number {i} " * 8, "metadata": json.dumps({"i": i}),
                       "blob_key": f"grown{i:027d}", "created_at": 1000.0 + i} for i in range(n)])
    engine.dispose()



def run_child(store: Path, kill_after: float | None) -> tuple[float, int]:
    return run_killable(CHILD, store, kill_after)


@pytest.mark.parametrize("backend", META_BACKENDS)
def test_sigkill_during_migrate_never_loses_a_committed_row(backend, tmp_path, tiny_lm, embedder):
    seed = int(os.environ.get("PARAMDB_KILL_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)

    def fresh(name: str, url: str | None) -> Path:
        store = format1_on(tmp_path / name, url) if url else format1_copy(tmp_path / name)
        grow(store, EXTRA_ROWS)
        return store

    figures: Counter[str] = Counter()
    attempt = 0
    while figures["killed"] < KILLS[backend] and attempt <= 4 * KILLS[backend]:
        attempt += 1
        with (pg_schema_url() if backend == "postgresql" else _no_url()) as url:
            store = fresh(f"s{attempt}", url)
            committed = [{k: v for k, v in r.items() if k != "text_sha256"} for r in raw_rows(meta_url_of(store))]
            blobs_before = blob_sha256(store)
            if attempt == 1:                                   # timing run: how long a whole migrate takes
                full, code = run_child(store, None)
                assert code == 0
                continue
            delay = rng.uniform(0, full * 1.1)
            took, code = run_child(store, delay)
            figures["killed" if code == -signal.SIGKILL else "finished"] += 1
            if code != -signal.SIGKILL:                        # it ran faster than timed: aim earlier
                full = min(full, took)
            where = _state(store)
            figures[where] += 1
            msg = f"seed {seed}, kill after {delay:.3f}s of {full:.3f}s, state {where}"

            rows = raw_rows(meta_url_of(store))                # exactly the committed rows, nothing half-done
            assert [{k: v for k, v in r.items() if k != "text_sha256"} for r in rows] == committed, msg
            hashes = {r.get("text_sha256") for r in rows}
            assert hashes == {None} or all(r["text_sha256"] == text_sha256(r["text"]) for r in rows), msg
            if where.startswith(f"format{FORMAT_VERSION}/"):
                with ParamDB.open(store, model=tiny_lm, embedder=embedder) as db:
                    assert len(db) == len(committed), msg
            else:
                with pytest.raises(FormatError, match="paramdb migrate"):
                    ParamDB.open(store, model=tiny_lm, embedder=embedder)

            report = migrate(store)                            # the rerun finishes the job
            assert report.rows == len(committed) and not report.damaged, msg
            assert [{k: v for k, v in r.items() if k != "text_sha256"}
                    for r in raw_rows(meta_url_of(store))] == committed, msg
            assert blob_sha256(store) == blobs_before, msg
            with ParamDB.open(store, model=tiny_lm, embedder=embedder) as db:
                assert len(db) == len(committed) and db.get("g17").text.startswith("grown document number 17")
                if not figures["queried"]:                     # rebuilding the indexes is slow: once
                    figures["queried"] += 1
                    assert db.query("moonrind glass Tessaly", k=1, method="bm25")[0].id == "zorvath"
    assert figures["killed"] >= KILLS[backend], f"seed {seed}: {dict(figures)}"
    del figures["queried"]
    print(f"\nkill test [{backend}] seed {seed}: {dict(figures)}, full migrate {full:.2f}s, rows lost 0")


def _state(store: Path) -> str:
    """Where the kill landed: the marker's format and the schema revision."""
    marker = json.loads((store / "paramdb.json").read_text())["format_version"]
    engine = sa.create_engine(meta_url_of(store), poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        rev = schema.revision(conn)
    engine.dispose()
    return f"format{marker}/schema{rev}"


class _no_url:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
