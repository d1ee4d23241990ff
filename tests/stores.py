"""Test helpers for whole stores on disk: the format-1 fixture, raw rows and raw blob bytes.

Rows and blobs are read with plain SQL and plain LMDB reads, not through MetaStore's row mapping, so a
test compares what is really stored rather than what ParamDB's own code makes of it.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import lmdb
import sqlalchemy as sa

from paramdb.storage.blobs import KINDS

FIXTURES = Path(__file__).parent / "fixtures"
FORMAT1_STORE = FIXTURES / "format1_store"
FORMAT1_EXPECTED = json.loads((FIXTURES / "format1_expected.json").read_text())
ROW_COLUMNS = ("rowid", "id", "text", "metadata", "blob_key", "created_at")


def format1_copy(dest: Path) -> Path:
    """A private copy of the format-1 fixture store (the fixture itself is never written)."""
    shutil.copytree(FORMAT1_STORE, dest)
    return dest


def format1_on(dest: Path, url: str) -> Path:
    """A format-1 store whose metadata lives at ``url`` (e.g. PostgreSQL): the fixture's tables and rows
    re-created there at the baseline revision, its LMDB copied, its marker naming the URL."""
    from alembic import command

    from paramdb.storage import schema

    shutil.copytree(FORMAT1_STORE / "blobs.lmdb", dest / "blobs.lmdb")
    src = sqlite3.connect(FORMAT1_STORE / "meta.sqlite")
    info = src.execute("SELECT key, value FROM store_info").fetchall()
    rows = src.execute(f"SELECT {', '.join(ROW_COLUMNS)} FROM documents ORDER BY rowid").fetchall()
    seq = src.execute("SELECT seq FROM sqlite_sequence WHERE name = 'documents'").fetchone()[0]
    src.close()
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        command.upgrade(schema.alembic_config(conn), schema.BASELINE)
        conn.exec_driver_sql("DROP TABLE alembic_version")          # format 1 had no Alembic
        conn.execute(sa.text("INSERT INTO store_info (key, value) VALUES (:k, :v)"),
                     [{"k": k, "v": v} for k, v in info])
        conn.execute(sa.text("INSERT INTO documents (rowid, id, text, metadata, blob_key, created_at) "
                             "VALUES (:rowid, :id, :text, :metadata, :blob_key, :created_at)"),
                     [dict(zip(ROW_COLUMNS, r)) for r in rows])
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT setval(pg_get_serial_sequence('documents', 'rowid'), :v)"), {"v": seq})
    engine.dispose()
    (dest / "paramdb.json").write_text(json.dumps({"format_version": 1, "meta_url": url}))
    return dest


def meta_url_of(store: Path) -> str:
    info = json.loads((store / "paramdb.json").read_text())
    return info.get("meta_url") or f"sqlite:///{(store / 'meta.sqlite').resolve()}"


def raw_rows(url: str) -> list[dict]:
    """Every documents row as stored: metadata as its raw JSON text, plus text_sha256 when present."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        cols = {c["name"] for c in sa.inspect(conn).get_columns("documents")}
        extra = ", text_sha256" if "text_sha256" in cols else ""
        result = conn.execute(sa.text(f"SELECT rowid, id, text, CAST(metadata AS TEXT) AS metadata, blob_key, "
                                      f"created_at{extra} FROM documents ORDER BY rowid"))
        rows = [dict(r._mapping) for r in result]
    engine.dispose()
    return rows


def raw_info(url: str) -> dict[str, str]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        info = dict(conn.execute(sa.text("SELECT key, value FROM store_info")).all())
    engine.dispose()
    return info


def blob_bytes(store: Path) -> dict[str, dict[str, bytes]]:
    """kind -> key -> the exact value bytes in the store's LMDB (read without a lock file, so reading the
    committed fixture leaves no trace in the work tree; call it only when no one writes)."""
    env = lmdb.open(str(store / "blobs.lmdb"), readonly=True, lock=False, max_dbs=4)
    try:
        with env.begin() as txn:
            out = {}
            for kind in KINDS:
                db = env.open_db(kind.encode(), txn=txn, create=False)
                out[kind] = {bytes(k).decode(): bytes(v) for k, v in txn.cursor(db=db)}
            return out
    finally:
        env.close()


def blob_sha256(store: Path) -> dict[str, dict[str, str]]:
    return {kind: {k: hashlib.sha256(v).hexdigest() for k, v in values.items()}
            for kind, values in blob_bytes(store).items()}


def expected_rows() -> list[dict]:
    """The fixture's rows with metadata parsed, in rowid order."""
    return [dict(r) for r in FORMAT1_EXPECTED["rows"]]


def parsed(rows: list[dict]) -> list[dict]:
    """Rows with their raw metadata text parsed, comparable with :func:`expected_rows`."""
    return [{**{k: r[k] for k in ROW_COLUMNS}, "metadata": json.loads(r["metadata"])} for r in rows]


def run_killable(child: str, store: Path, kill_after: float | None) -> tuple[float, int]:
    """Run ``child`` (Python source that prints 'ready' once imported, then works on ``store``) in a process;
    SIGKILL it ``kill_after`` seconds after 'ready' (None: let it finish). Returns (seconds from ready to exit
    or kill, return code)."""
    proc = subprocess.Popen([sys.executable, "-c", child, str(store)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    start = time.monotonic()
    if kill_after is not None:
        try:
            proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=300)
    took = time.monotonic() - start
    proc.stdout.close()
    proc.stderr.close()
    return took, proc.returncode
