"""How MetaStore talks to SQLite, and which failed statements are the user's to act on (any backend).

SQLite runs in WAL mode so readers never block the writer; a read-only store opens its file read-only.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from paramdb.errors import DiskFull, ReadOnlyStore


def connect(dbapi_conn: Any, _record: Any) -> None:
    """WAL so readers never block the writer; driver autocommit so ``begin`` owns BEGIN."""
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def connect_readonly(dbapi_conn: Any, _record: Any) -> None:
    """As :func:`connect` less the journal-mode pragma, which may write (the store is WAL already)."""
    dbapi_conn.isolation_level = None


def readonly_url(url: sa.URL) -> sa.URL:
    """The SQLite file opened read-only (``mode=ro``); where its folder cannot be written either, also
    ``immutable``: WAL mode would otherwise need to create its shared-memory file next to it."""
    if not url.database or url.database == ":memory:":
        return url
    path = Path(url.database).resolve()
    query = "mode=ro" + ("" if os.access(path.parent, os.W_OK) else "&immutable=1")
    return sa.make_url(f"sqlite:///file:{path}?{query}&uri=true")


def _no_space_left(url: sa.URL) -> bool:
    """SQLite reports a full disk met while opening its WAL files only as a "disk I/O error"."""
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return False
    try:
        return os.statvfs(Path(url.database).resolve().parent).f_bavail == 0
    except OSError:
        return False


def known_failure(exc: sa_exc.DBAPIError, url: sa.URL) -> Exception | None:
    """A failed statement the user can act on: a read-only database, a full disk (nothing was committed)."""
    text = str(exc.orig).lower()
    where = url.render_as_string()
    if "readonly database" in text or "read-only" in text:
        return ReadOnlyStore(f"metadata database {where} is read-only: nothing was written")
    if "disk is full" in text or "no space left" in text or (
            "disk i/o error" in text and _no_space_left(url)):
        return DiskFull(f"the disk under metadata database {where} is full: the write was rolled back and "
                        "nothing was stored (free some space and retry)")
    return None


def begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("paramdb_write") else "BEGIN")
