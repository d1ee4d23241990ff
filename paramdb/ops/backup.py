"""Backup, restore and verify: one archive holding a snapshot of the store as it was at one instant.

The instant: under the writer lock (so no write is between its LMDB and SQL commits) the backup opens an
LMDB read transaction and copies the SQL metadata (SQLite's online backup API in one step, or for a server
database a copy of ParamDB's tables into a SQLite file), then releases the lock and lets writers go on while
it copies LMDB from that read transaction (a compacting copy). Both halves therefore show the same committed
rows, and the lock is held only for the SQL copy, not for the adapters.

Derived indexes are not archived: they are rebuilt from the rows on first use after a restore.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path

from paramdb.engine.store import Store, open_store
from paramdb.errors import CorruptData, InvalidInput, StoreExists
from paramdb.layout import Layout
from paramdb.storage.meta import MetaStore

from . import archive as arc
from .check import check
from .copy import copy_metadata


def backup(store: Store, archive: str | Path) -> dict:
    """Write ``archive`` from the open ``store``; returns the manifest written into it."""
    archive = Path(archive)
    if archive.exists():
        raise StoreExists(f"{archive} already exists; choose a new archive name")
    if not archive.parent.is_dir():
        raise InvalidInput(f"{archive.parent} is not a folder")
    with tempfile.TemporaryDirectory(prefix=".paramdb-backup-", dir=archive.parent) as tmp:
        work = Path(tmp)
        meta_file, blobs_dir = work / arc.META, work / "blobs.lmdb"
        with contextlib.ExitStack() as locked:
            locked.enter_context(store.lock.frozen("backup"))
            with store.blobs.snapshot() as snap:
                _snapshot_sql(store.meta, meta_file)
                generation, rows = _sql_counts(meta_file)
                locked.close()                 # writers go on: the read transaction keeps what it saw
                snap.copy_to(blobs_dir)
        marker = work / arc.MARKER
        config = store.config
        marker.write_text(json.dumps({"format_version": config.format_version, "meta_url": None}))
        manifest = {"format_version": config.format_version, "model": config.model,
                    "model_fingerprint": config.model_fingerprint, "rows": rows, "generation": generation,
                    "created_at": time.time(), "source": str(store.path)}
        return arc.write(archive, {arc.MARKER: marker, arc.META: meta_file, arc.BLOBS: blobs_dir / "data.mdb"},
                         manifest)


def _snapshot_sql(meta: MetaStore, target: Path) -> None:
    if meta.url.get_backend_name() == "sqlite":
        src = sqlite3.connect(meta.url.database)
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)            # all pages in one step: one read transaction, one instant
        finally:
            dst.close()
            src.close()
        return
    copy = MetaStore(f"sqlite:///{target}")
    try:
        copy_metadata(meta, copy)      # rows, store_info and the rowid counter, from one snapshot
    finally:
        copy.close()


def _sql_counts(meta_file: Path) -> tuple[int, int]:
    con = sqlite3.connect(meta_file)
    try:
        gen = con.execute("SELECT value FROM store_info WHERE key = 'generation'").fetchone()
        rows = con.execute("SELECT count(*) FROM documents").fetchone()[0]
    finally:
        con.close()
    return int(json.loads(gen[0])) if gen else 0, int(rows)


def restore(archive: str | Path, store: str | Path, overwrite: bool = False) -> dict:
    """Restore ``archive`` as the store at ``store``; returns the archive's manifest.

    Nothing becomes visible until every member has passed its sha256 and the restored rows match the
    manifest; then the new store takes the place of the old in one rename (an atomic exchange on Linux).
    """
    archive, store = Path(archive), Path(store)
    if not archive.is_file():
        raise InvalidInput(f"no archive at {archive}")
    if Layout(store).exists() and not overwrite:
        raise StoreExists(f"a store already exists at {store}; pass overwrite (--force) to replace it")
    if store.exists() and not Layout(store).exists() and any(store.iterdir()):
        raise StoreExists(f"{store} exists and is not a store; refusing to replace it")
    store.parent.mkdir(parents=True, exist_ok=True)
    staging = store.parent / f".{store.name}.restore-{uuid.uuid4().hex[:8]}"
    staging.mkdir(mode=0o700)
    try:
        manifest = arc.extract(archive, staging)
        _, rows = _sql_counts(staging / arc.META)
        if rows != manifest.get("rows"):
            raise CorruptData(f"{archive}: holds {rows} rows, its manifest says {manifest.get('rows')}")
        _swap_in(staging, store)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _swap_in(staging: Path, store: Path) -> None:
    """Put ``staging`` at ``store``; an existing store ends up at ``staging`` (removed by the caller)."""
    if not store.exists():
        os.rename(staging, store)
        return
    if not _exchange(staging, store):       # no renameat2: two renames, the old store kept until the end
        old = store.parent / f".{store.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(store, old)
        os.rename(staging, store)
        os.rename(old, staging)


def _exchange(a: Path, b: Path) -> bool:
    """Linux renameat2(RENAME_EXCHANGE): swap two paths atomically. False where unavailable."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        at_fdcwd, rename_exchange = -100, 2
        return libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0
    return False


def verify(path: str | Path) -> list[str]:
    """Problems found in an archive or a live store (empty when sound); never changes anything."""
    path = Path(path)
    if path.is_file():
        with tempfile.TemporaryDirectory(prefix=".paramdb-verify-") as tmp:
            try:
                restore(path, Path(tmp) / "store")
            except (CorruptData, InvalidInput) as exc:
                return [str(exc)]
            with open_store(Path(tmp) / "store") as store:
                return [str(f) for f in check(store).findings if f.severity == "error"]
    with open_store(path) as store:
        return [str(f) for f in check(store).findings if f.severity == "error"]
