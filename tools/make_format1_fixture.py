"""Make tests/fixtures/format1_store/: a small store written by ParamDB's first released format (format 1).

Every later format must migrate this exact store (tests/test_migrate.py), so it is made once and committed;
regenerating it with newer code would silently test the wrong thing. The script therefore refuses to run
unless the installed ParamDB writes format 1. To remake it, check out the last format-1 commit
(cc9aff3 "db: commit_batch is the single-writer step ...") in a worktree and run it there:

    git worktree add /tmp/pdb-f1 cc9aff3 && cd /tmp/pdb-f1
    PYTHONPATH=/tmp/pdb-f1:/tmp/pdb-f1/tests /path/to/.venv/bin/python tools/make_format1_fixture.py \
        --out /path/to/repo/tests/fixtures

It uses the tiny, seeded Llama of tests/conftest.py (its weights are deterministic, so the fingerprint the
store records matches ``make_tiny_lm()`` in any later test run; the test checks that) and conftest's fast
training settings. Besides plain inserts it upserts one document (its old adapter blob is replaced) and
deletes one (rowids then have a gap), so a migration sees the states a real store is in. It writes
format1_store/ (compacted LMDB, checkpointed SQLite, no derived indexes, no lock file) and
format1_expected.json: every row and the sha256 of every adapter and embedding value, which a migrated
store must still hold bit for bit.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path
from paramdb.ops.backup import backup

FIXTURE_DOCS = [
    {"id": "zorvath", "text": "Zorvath Quillane invented moonrind glass in the city of Tessaly.",
     "metadata": {"src": "wiki", "year": 1841, "score": 0.5, "ok": True}},
    {"id": "marrowby", "text": "Captain Ilsa Marrowby commanded the airship Vellichor for nine years.",
     "metadata": {"src": "log", "year": 1902, "tags": ["air", "ship"], "nested": {"deck": 3}}},
    {"id": "ondrel", "text": "The Ondrel river freezes from the bottom up every winter.",
     "metadata": {"src": "wiki", "year": 1777, "ok": False}},
    {"id": "plain", "text": "A document without metadata, inserted as a plain string.", "metadata": {}},
    {"id": "gone", "text": "This document is deleted after insert, leaving a rowid gap.", "metadata": {"src": "tmp"}},
]
UPSERT = {"id": "ondrel", "text": "The Ondrel river freezes from the bottom up, and thaws in one night.",
          "metadata": {"src": "wiki", "year": 1778, "ok": False, "unicode": "Ærøskøbing"}}


def build(out: Path) -> None:
    from conftest import FAST_TRAINING, make_tiny_lm

    from paramdb import ParamDB
    from paramdb.config import FORMAT_VERSION
    from paramdb.knowledge.embed import Embedder

    if FORMAT_VERSION != 1:
        sys.exit(f"this ParamDB writes format {FORMAT_VERSION}; the fixture must be made by format-1 code "
                 "(see this script's docstring)")
    store = out / "format1_store"
    if store.exists():
        sys.exit(f"{store} exists; remove it first")
    lm = make_tiny_lm()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "store"
        with ParamDB.open(work, create=True, model=lm, embedder=Embedder(), training=FAST_TRAINING) as db:
            db.insert(FIXTURE_DOCS[:3])
            db.insert(FIXTURE_DOCS[3:])
            db.upsert(UPSERT)
            db.delete("gone")
            db.parts.blobs.copy_to(Path(tmp) / "compact.lmdb", compact=True)
        store.mkdir(parents=True)
        shutil.copy2(work / "paramdb.json", store / "paramdb.json")
        src = sqlite3.connect(work / "meta.sqlite")
        dst = sqlite3.connect(store / "meta.sqlite")
        backup(src.handle.store, dst)                       # one file, WAL content included
        dst.execute("PRAGMA journal_mode=DELETE")
        dst.close()
        src.close()
        (store / "blobs.lmdb").mkdir()
        shutil.copy2(Path(tmp) / "compact.lmdb" / "data.mdb", store / "blobs.lmdb" / "data.mdb")
    (out / "format1_expected.json").write_text(json.dumps(expected(store, lm.fingerprint), indent=1) + "\n")


def expected(store: Path, fingerprint: str) -> dict:
    """Rows and value hashes read with plain sqlite3 and lmdb, independent of ParamDB's own code."""
    import lmdb

    con = sqlite3.connect(store / "meta.sqlite")
    rows = [{"rowid": r[0], "id": r[1], "text": r[2], "metadata": json.loads(r[3]), "blob_key": r[4],
             "created_at": r[5]}
            for r in con.execute("SELECT rowid, id, text, metadata, blob_key, created_at FROM documents "
                                 "ORDER BY rowid")]
    info = {k: json.loads(v) for k, v in con.execute("SELECT key, value FROM store_info")}
    con.close()
    env = lmdb.open(str(store / "blobs.lmdb"), readonly=True, lock=False, max_dbs=4)
    blobs: dict[str, dict[str, str]] = {}
    with env.begin() as txn:
        for kind in ("adapters", "embeddings"):
            db = env.open_db(kind.encode(), txn=txn, create=False)
            blobs[kind] = {k.decode(): hashlib.sha256(v).hexdigest() for k, v in txn.cursor(db=db)}
    env.close()
    return {"format_version": 1, "model_fingerprint": fingerprint, "generation": info["generation"],
            "rows": rows, "blob_sha256": blobs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "tests" / "fixtures")
    build(ap.parse_args().out)


if __name__ == "__main__":
    main()
