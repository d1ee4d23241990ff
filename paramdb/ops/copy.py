"""``paramdb copy SRC DST [--meta-url URL]``: a new store with the same rows and adapters, bit for bit.

The way to move a store, e.g. its metadata from SQLite to a PostgreSQL server or back. Rows keep their
rowids, blob keys, texts, metadata and timestamps; ``store_info`` (config, generation, blob format) and the
rowid counter come along, so the copy behaves exactly like the source; LMDB is copied with
``env.copy(compact=True)``, which keeps every value and drops free pages. Derived indexes are not copied:
the copy rebuilds them on first use.

The source's writer lock is held throughout, so the rows and the adapters come from one moment. The
destination's metadata is written in one transaction (schema, rows, counter) and its marker last: a copy
that fails or is killed never leaves something that opens as a store, and a failed one cleans up after
itself (a killed one leaves DST without a marker, to be removed by hand).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from paramdb.config import FORMAT_VERSION
from paramdb.engine.store import open_store
from paramdb.errors import FormatError, InvalidInput, StoreExists
from paramdb.layout import Layout
from paramdb.storage import rowids, schema
from paramdb.storage.blobs import BlobStore
from paramdb.storage.lock import DEFAULT_TIMEOUT
from paramdb.storage.meta import MetaStore, documents, store_info

_CHUNK = 500


@dataclass
class CopyReport:
    source: str
    destination: str
    meta_url: str       # the destination's metadata URL, password hidden
    rows: int
    adapters: int


def copy_store(src: str | Path, dst: str | Path, meta_url: str | None = None, *,
               lock_timeout: float = DEFAULT_TIMEOUT) -> CopyReport:
    """Copy the store at ``src`` to a new store at ``dst`` (refused if one is there), its metadata into
    ``meta_url`` (default: ``dst``'s own SQLite file), which must not already hold a ParamDB store."""
    target = Layout(Path(dst))
    source = open_store(src, lock_timeout=lock_timeout, readonly=True)
    with source:
        if target.root.resolve() == source.path.resolve():
            raise InvalidInput(f"cannot copy store {source.path} onto itself")
        if target.exists() or (target.root.exists() and any(target.root.iterdir())):
            raise StoreExists(f"{target.root} exists and is not empty; copy needs a new path")
        with source.lock.frozen("copy"):
            dst_url, rows, adapters = _copy_locked(source.meta, source.blobs, target, meta_url)
    return CopyReport(str(source.path), str(target.root), sa.make_url(dst_url).render_as_string(),
                      rows, adapters)


def _copy_locked(src_meta: MetaStore, src_blobs: BlobStore, target: Layout,
                 meta_url: str | None) -> tuple[str, int, int]:
    """The copy itself, under the source's writer lock; a failure removes whatever it made."""
    made_dir = not target.root.exists()
    dst_meta: MetaStore | None = None
    tables_made = False
    try:
        dst_url = target.create(FORMAT_VERSION, meta_url)
        dst_meta = MetaStore(dst_url)
        rows = copy_metadata(src_meta, dst_meta)
        tables_made = True
        src_blobs.copy_to(target.blobs, compact=True)
        with BlobStore(target.blobs, readonly=True) as copied:
            adapters = copied.count("adapters")
            if adapters != src_blobs.count("adapters") or \
                    copied.count("embeddings") != src_blobs.count("embeddings"):
                raise InvalidInput(f"LMDB copy to {target.blobs} is incomplete")
        target.commit_marker()
    except BaseException:
        if dst_meta is not None and tables_made:
            _drop_tables(dst_meta)
        target.discard(made_dir)
        raise
    finally:
        if dst_meta is not None:
            dst_meta.close()
    return dst_url, rows, adapters


def copy_metadata(src: MetaStore, dst: MetaStore) -> int:
    """Schema, ``store_info``, every row (in rowid pages) and the rowid counter, in one destination
    transaction read from one source snapshot; returns the number of rows."""
    n = 0
    with src.transaction() as s, dst.transaction(write=True) as d:
        if schema.revision(s) != schema.head():
            raise FormatError(f"source metadata is at schema revision {schema.revision(s)!r}, not "
                              f"{schema.head()}; run `paramdb migrate` on it first")
        if schema.has_tables(d):
            raise StoreExists(f"metadata database {dst.url.render_as_string()} already holds a ParamDB "
                              "store's tables; give an empty database")
        schema.upgrade(d)
        try:
            d.execute(sa.delete(store_info))
            info = [dict(r._mapping) for r in s.execute(sa.select(store_info))]
            if info:
                d.execute(sa.insert(store_info), info)
            last = -1
            while True:
                page = s.execute(sa.select(documents).where(documents.c.rowid > last)
                                 .order_by(documents.c.rowid).limit(_CHUNK)).all()
                if not page:
                    break
                d.execute(sa.insert(documents), [dict(r._mapping) for r in page])
                n += len(page)
                last = page[-1].rowid
            rowids.set_highest_issued(d, rowids.highest_issued(s))
        except sa_exc.DBAPIError as exc:    # e.g. a text with a NUL byte, which PostgreSQL refuses
            raise InvalidInput(f"cannot copy the metadata into {dst.url.render_as_string()}: "
                               f"{' '.join(str(exc.orig).split())}") from None
    return n


def _drop_tables(meta: MetaStore) -> None:
    """Undo a committed metadata copy whose LMDB half failed (only tables this copy created)."""
    with meta.transaction(write=True) as conn:
        for table in ("documents", "store_info", "alembic_version"):
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
