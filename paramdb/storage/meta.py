"""Row metadata in SQL through SQLAlchemy Core: SQLite by default, any SQLAlchemy URL (e.g. PostgreSQL).

SQL rather than LMDB for metadata because ``where=`` filters, counts and paging are what SQL does well,
and a shared server database lets several machines see one store. Every write is one transaction and
bumps ``generation`` inside it, so the derived vector index can tell cheaply whether it is stale.
"""
from __future__ import annotations

import builtins
import json
from collections.abc import Iterator, Sequence
import contextlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection


from paramdb.errors import DuplicateId, InvalidInput, MetadataUnavailable, StoreExists, UnknownId
from paramdb.storage import schema, sqlite_conn
from paramdb.storage.codec import BLOB_FORMAT
from paramdb.storage.hashes import fill_text_sha256, text_sha256
from paramdb.storage.where import where_clause

__all__ = ["MetaStore", "where_clause", "metadata"]

_CHUNK = 500  # stays well under SQLite's bound-parameter limit
_ROW_KEYS = ("id", "text", "metadata", "blob_key", "created_at")
_WRITE_KEYS = (*_ROW_KEYS, "text_sha256", "adapter_kind")  # the row plus what is derived from it
# How a row's adapter was made (format 3; migrations/0003). A "pending" row (``insert(parameterize="later")``)
# has none yet: LMDB holds only its embedding under its blob key, and ``refine`` trains it (a new blob key
# swapped in, like any adapter change), so "no adapter blob" is its normal state, never damage.
ADAPTER_KINDS = ("trained", "translated", "imported", "pending")
PENDING = "pending"

_md = sa.MetaData()
store_info = sa.Table(
    "store_info", _md,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)
documents = sa.Table(
    "documents", _md,
    sa.Column("rowid", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(256), unique=True, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("blob_key", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("text_sha256", sa.String(64), nullable=True),  # format 2; see migrations/versions/0002
    sa.Column("adapter_kind", sa.String(16), nullable=True),  # format 3; see migrations/versions/0003
    sqlite_autoincrement=True,  # never reuse a deleted rowid: a stale index must not point at a new row
)
# A row a format-2 writer added to a migrated store has no kind (NULL) until `paramdb migrate` fills it: its
# adapter was trained, and every read says so here, in SQL, so no caller needs its own fallback.
_KIND = sa.func.coalesce(documents.c.adapter_kind, "trained")
_COLS = [*(documents.c[k] for k in ("rowid", *_ROW_KEYS)), _KIND.label("adapter_kind")]
metadata = _md  # the model Alembic compares revisions against (migrations/env.py)


def _chunks(seq: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), _CHUNK):
        yield seq[i:i + _CHUNK]


def _clean(rows: Sequence[dict[str, Any]]) -> builtins.list[dict[str, Any]]:
    out = []
    for row in rows:
        missing = [k for k in _ROW_KEYS if k not in row]
        if missing:
            raise InvalidInput(f"row {row.get('id')!r} lacks {', '.join(missing)}")
        kind = row.get("adapter_kind", "trained")
        if kind not in ADAPTER_KINDS:
            raise InvalidInput(f"row {row.get('id')!r}: adapter kind {kind!r} is not one of {', '.join(ADAPTER_KINDS)}")
        out.append({**{k: row[k] for k in _ROW_KEYS}, "text_sha256": text_sha256(row["text"]),
                    "adapter_kind": kind})
    return out


class MetaStore:
    """The ``documents`` and ``store_info`` tables behind one SQLAlchemy engine."""

    def __init__(self, url: str, readonly: bool = False):
        try:
            self.url = sa.make_url(url)
        except sa_exc.ArgumentError:
            raise InvalidInput(f"{url!r} is not a database URL (e.g. sqlite:///path/meta.sqlite, "
                               "postgresql+psycopg://user@host/db)") from None
        self._sqlite = self.url.get_backend_name() == "sqlite"
        self.readonly = readonly
        kwargs: dict[str, Any] = {"connect_args": {"timeout": 30}} if self._sqlite else {}
        engine_url = sqlite_conn.readonly_url(self.url) if readonly and self._sqlite else self.url
        try:
            self._engine = sa.create_engine(engine_url, **kwargs)
        except (sa_exc.NoSuchModuleError, ImportError) as exc:
            raise MetadataUnavailable(f"no database driver for {self.url.render_as_string()}: {exc} "
                                      "(install it; for PostgreSQL: pip install 'psycopg[binary]')") from None
        if self._sqlite:
            sa.event.listen(self._engine, "connect", sqlite_conn.connect_readonly if readonly else sqlite_conn.connect)
            sa.event.listen(self._engine, "begin", sqlite_conn.begin)

    def create_all(self) -> None:
        """Make the tables in an empty database by running every migration from empty.

        Refused (StoreExists) where the database already holds a store's tables: a new store's config and
        rows written over another store's would orphan that store's adapters."""
        with self._tx(write=True) as conn:
            if schema.has_tables(conn):
                raise StoreExists(f"metadata database {self.url.render_as_string()} already holds a ParamDB "
                                  "store's tables; give an empty database")
            schema.upgrade(conn)
            conn.execute(sa.insert(store_info), [{"key": key, "value": json.dumps(value)}
                                                 for key, value in (("generation", 0), ("blob_format", BLOB_FORMAT))])

    def upgrade_schema(self) -> tuple[str | None, str]:
        """Migrate the SQL schema to the head revision and back-fill ``text_sha256`` in one transaction.

        Returns (revision before, revision after). Idempotent: the back-fill also covers rows a format-1
        writer added after an interrupted migration had already moved the schema.
        """
        with self._tx(write=True) as conn:
            got = schema.upgrade(conn)
            fill_text_sha256(conn)
            conn.execute(sa.update(documents).where(documents.c.adapter_kind.is_(None)).values(adapter_kind="trained"))
        return got

    def schema_revision(self) -> str | None:
        with self._tx() as conn:
            return schema.revision(conn)

    @contextmanager
    def _tx(self, write: bool = False) -> Iterator[Connection]:
        """One transaction; on SQLite writes take the write lock up front so check-then-write is safe."""
        try:
            connection = self._engine.connect()
        except sa_exc.DBAPIError as exc:
            known = sqlite_conn.known_failure(exc, self.url)
            if known is not None:
                raise known from None
            reason = " ".join(str(exc.orig).split())
            raise MetadataUnavailable(f"cannot connect to metadata database {self.url.render_as_string()}: "
                                      f"{reason}") from None
        with connection as conn:
            if write:
                conn.execution_options(paramdb_write=True)
            try:
                with conn.begin():
                    yield conn
            except sa_exc.OperationalError as exc:
                raise sqlite_conn.known_failure(exc, self.url) or exc

    def transaction(self, write: bool = False) -> contextlib.AbstractContextManager[Connection]:
        """One transaction for storage tools that need several statements together (schema, copy)."""
        return self._tx(write)

    def _bump(self, conn: Connection) -> None:
        q = sa.select(store_info.c.value).where(store_info.c.key == "generation").with_for_update()
        cur = conn.execute(q).scalar()
        if cur is None:
            conn.execute(sa.insert(store_info).values(key="generation", value="1"))
        else:
            conn.execute(sa.update(store_info).where(store_info.c.key == "generation")
                         .values(value=json.dumps(int(json.loads(cur)) + 1)))

    # -- store_info -----------------------------------------------------------------------------------
    def get_info(self, key: str, default: Any = None) -> Any:
        with self._tx() as conn:
            raw = conn.execute(sa.select(store_info.c.value).where(store_info.c.key == key)).scalar()
        return default if raw is None else json.loads(raw)

    def set_info(self, key: str, value: Any) -> None:
        """Upsert one JSON value. Does not bump ``generation``: info does not affect the vector index."""
        raw = json.dumps(value)
        with self._tx(write=True) as conn:
            res = conn.execute(sa.update(store_info).where(store_info.c.key == key).values(value=raw))
            if res.rowcount == 0:
                conn.execute(sa.insert(store_info).values(key=key, value=raw))

    def all_info(self) -> dict[str, Any]:
        with self._tx() as conn:
            return {k: json.loads(v) for k, v in conn.execute(sa.select(store_info.c.key, store_info.c.value))}

    def generation(self) -> int:
        return int(self.get_info("generation", 0))

    # -- writes ---------------------------------------------------------------------------------------
    def _rowids(self, conn: Connection, ids: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for chunk in _chunks(ids):
            q = sa.select(documents.c.id, documents.c.rowid).where(documents.c.id.in_(chunk))
            out.update({i: r for i, r in conn.execute(q)})
        return out

    def insert(self, rows: Sequence[dict[str, Any]]) -> builtins.list[int]:
        """Add new rows; any id already stored or repeated in ``rows`` raises DuplicateId, writing nothing."""
        clean = _clean(rows)
        if not clean:
            return []
        ids = [r["id"] for r in clean]
        seen: set[str] = set()
        for i in ids:
            if i in seen:
                raise DuplicateId(i)
            seen.add(i)
        try:
            with self._tx(write=True) as conn:
                present = self._rowids(conn, ids)
                if present:
                    raise DuplicateId(next(i for i in ids if i in present))
                conn.execute(sa.insert(documents), clean)
                self._bump(conn)
                got = self._rowids(conn, ids)
        except sa_exc.IntegrityError:  # a concurrent writer on a server database won the race
            dup = self.existing_ids(ids)
            if dup:
                raise DuplicateId(next(i for i in ids if i in dup)) from None
            raise
        return [got[i] for i in ids]

    def upsert(self, rows: Sequence[dict[str, Any]]) -> tuple[builtins.list[int], builtins.list[str]]:
        """Insert new ids, update existing ones in place (same rowid).

        Returns (rowids in order, blob keys that were replaced); the caller deletes those blobs only after
        this commits, so a crash leaves an orphan blob, never a row pointing at nothing.
        """
        clean = _clean(rows)
        ids = [r["id"] for r in clean]
        if len(set(ids)) != len(ids):
            dup = next(i for n, i in enumerate(ids) if i in ids[:n])
            raise InvalidInput(f"id {dup!r} appears more than once in one upsert batch")
        if not clean:
            return [], []
        with self._tx(write=True) as conn:
            old: dict[str, str] = {}
            for chunk in _chunks(ids):
                q = sa.select(documents.c.id, documents.c.blob_key).where(documents.c.id.in_(chunk))
                old.update({i: k for i, k in conn.execute(q)})
            updates = [{f"b_{k}": r[k] for k in _WRITE_KEYS} for r in clean if r["id"] in old]
            inserts = [r for r in clean if r["id"] not in old]
            if updates:
                stmt = (sa.update(documents).where(documents.c.id == sa.bindparam("b_id"))
                        .values({k: sa.bindparam(f"b_{k}") for k in _WRITE_KEYS if k != "id"}))
                conn.execute(stmt, updates)
            if inserts:
                conn.execute(sa.insert(documents), inserts)
            self._bump(conn)
            got = self._rowids(conn, ids)
        replaced = [old[r["id"]] for r in clean if r["id"] in old and old[r["id"]] != r["blob_key"]]
        return [got[i] for i in ids], replaced

    def delete(self, ids: Sequence[str]) -> builtins.list[tuple[int, str]]:
        """Remove rows; returns (rowid, blob_key) per id. Any unknown id raises UnknownId, deleting nothing."""
        ids = builtins.list(dict.fromkeys(ids))
        if not ids:
            return []
        with self._tx(write=True) as conn:
            found: dict[str, tuple[int, str]] = {}
            for chunk in _chunks(ids):
                q = sa.select(documents.c.id, documents.c.rowid, documents.c.blob_key).where(documents.c.id.in_(chunk))
                found.update({i: (r, k) for i, r, k in conn.execute(q)})
            for i in ids:
                if i not in found:
                    raise UnknownId(i)
            for chunk in _chunks(ids):
                conn.execute(sa.delete(documents).where(documents.c.id.in_(chunk)))
            self._bump(conn)
        return [found[i] for i in ids]

    def swap_adapters(self, swaps: Sequence[tuple[str, str, str, str]]) -> builtins.list[tuple[str, str]]:
        """Point rows at new adapters: (id, blob key read, new blob key, adapter kind) each, in one transaction.

        A row is swapped only if it still has the blob key it was read with (compare-and-swap), so work
        done from an old read never overwrites a later upsert; a deleted row is skipped too. Returns
        (id, old blob key) of the rows swapped, whose old blobs are now garbage.
        """
        done: builtins.list[tuple[str, str]] = []
        if not swaps:
            return done
        with self._tx(write=True) as conn:
            for doc_id, old_key, new_key, kind in swaps:
                res = conn.execute(sa.update(documents)
                                   .where(documents.c.id == doc_id, documents.c.blob_key == old_key)
                                   .values(blob_key=new_key, adapter_kind=kind))
                if res.rowcount == 1:
                    done.append((doc_id, old_key))
            if done:
                self._bump(conn)
        return done

    def adapter_kinds(self) -> dict[str, int]:
        """Rows per adapter kind (every kind listed, zero included)."""
        q = sa.select(_KIND, sa.func.count()).group_by(_KIND)
        with self._tx() as conn:
            got = dict(conn.execute(q).all())
        return {k: int(got.get(k, 0)) for k in ADAPTER_KINDS}

    def rows_of_kind(self, kind: str | Sequence[str], limit: int | None = None) -> builtins.list[dict[str, Any]]:
        """Rows whose adapter was made ``kind`` (one kind or several), in that order of kinds and then in
        rowid order (what refine works through: pending rows, which have no adapter, first)."""
        kinds = [kind] if isinstance(kind, str) else builtins.list(kind)
        order = sa.case({k: i for i, k in enumerate(kinds)}, value=_KIND)
        q = sa.select(*_COLS).where(_KIND.in_(kinds)).order_by(order, documents.c.rowid).limit(limit)
        with self._tx() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def blob_keys_of_kind(self, kind: str) -> set[str]:
        """Blob keys of the rows of one adapter kind (e.g. the pending rows, whose keys hold no adapter)."""
        q = sa.select(documents.c.blob_key).where(_KIND == kind)
        with self._tx() as conn:
            return set(conn.execute(q).scalars())

    # -- reads ----------------------------------------------------------------------------------------
    def _fetch(self, col: sa.Column, keys: Sequence[Any]) -> builtins.list[dict[str, Any]]:
        by: dict[Any, dict[str, Any]] = {}
        with self._tx() as conn:
            for chunk in _chunks(builtins.list(dict.fromkeys(keys))):
                for row in conn.execute(sa.select(*_COLS).where(col.in_(chunk))):
                    by[row._mapping[col.name]] = dict(row._mapping)
        return [by[k] for k in keys if k in by]

    def get(self, ids: Sequence[str]) -> builtins.list[dict[str, Any]]:
        """Rows in the order of ``ids``; missing ids are simply absent."""
        return self._fetch(documents.c.id, ids)

    def get_by_rowids(self, rowids: Sequence[int]) -> builtins.list[dict[str, Any]]:
        return self._fetch(documents.c.rowid, [int(r) for r in rowids])

    def count(self, where: dict[str, Any] | None = None) -> int:
        q = sa.select(sa.func.count()).select_from(documents)
        if where is not None:
            q = q.where(where_clause(documents, where))
        with self._tx() as conn:
            return int(conn.execute(q).scalar_one())

    def id_of_blob(self, blob_key: str) -> str | None:
        """The id of the row whose blobs are under ``blob_key`` (to name a damaged blob's document)."""
        with self._tx() as conn:
            return conn.execute(sa.select(documents.c.id).where(documents.c.blob_key == blob_key)).scalar()

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        with self._tx() as conn:
            return set(self._rowids(conn, builtins.list(ids)))

    def rowids_matching(self, where: dict[str, Any]) -> builtins.list[int]:
        q = sa.select(documents.c.rowid).where(where_clause(documents, where)).order_by(documents.c.rowid)
        with self._tx() as conn:
            return builtins.list(conn.execute(q).scalars())

    def all_rows_keys(self) -> builtins.list[tuple[int, str, str]]:
        """(rowid, id, blob_key) for every row: what rebuilds and ``check`` compare against LMDB."""
        q = sa.select(documents.c.rowid, documents.c.id, documents.c.blob_key).order_by(documents.c.rowid)
        with self._tx() as conn:
            return [tuple(r) for r in conn.execute(q)]

    def size_bytes(self) -> int:
        """SQLite: the database file plus its WAL; server databases report 0 (not ours to measure)."""
        if not self._sqlite or not self.url.database or self.url.database == ":memory:":
            return 0
        base = Path(self.url.database)
        return sum(p.stat().st_size for p in (base, Path(f"{base}-wal")) if p.exists())

    def close(self) -> None:
        self._engine.dispose()

    def list(self, limit: int | None = None, offset: int = 0,
             where: dict[str, Any] | None = None) -> builtins.list[dict[str, Any]]:
        """Rows ordered by rowid (insertion order), for paging."""
        q = sa.select(*_COLS).order_by(documents.c.rowid).limit(limit).offset(offset)
        if where is not None:
            q = q.where(where_clause(documents, where))
        with self._tx() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]
