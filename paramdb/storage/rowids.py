"""The ``documents.rowid`` counter: the highest rowid ever handed out, which must survive a copy.

A rowid is never reused, even after its row is deleted, because a stale derived index may still name it.
SQLite keeps the counter in ``sqlite_sequence`` (AUTOINCREMENT), PostgreSQL in the column's sequence.
Copying rows with their rowids moves neither, so ``paramdb copy`` reads it here and sets it on the copy.
"""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from paramdb.errors import InvalidInput


def _pg_sequence(conn: Connection) -> str:
    name = conn.execute(sa.text("SELECT pg_get_serial_sequence('documents', 'rowid')")).scalar()
    if name is None:
        raise InvalidInput("documents.rowid has no sequence in this PostgreSQL database")
    return name


def highest_issued(conn: Connection) -> int:
    """The highest rowid the database has ever issued (0 if none): at least the largest rowid present."""
    dialect = conn.dialect.name
    present = int(conn.execute(sa.text("SELECT COALESCE(MAX(rowid), 0) FROM documents")).scalar_one())
    if dialect == "sqlite":
        seq = conn.execute(sa.text("SELECT seq FROM sqlite_sequence WHERE name = 'documents'")).scalar()
    elif dialect == "postgresql":
        last, called = conn.execute(sa.text(f"SELECT last_value, is_called FROM {_pg_sequence(conn)}")).one()
        seq = last if called else 0
    else:
        seq = None  # unknown dialect: the largest rowid present is the best we know
    return max(present, int(seq or 0))


def set_highest_issued(conn: Connection, value: int) -> None:
    """Make the next rowid ``value + 1`` (never lowers the counter below the rows present)."""
    value = max(value, highest_issued(conn))
    dialect = conn.dialect.name
    if value <= 0:
        return
    if dialect == "sqlite":
        done = conn.execute(sa.text("UPDATE sqlite_sequence SET seq = :v WHERE name = 'documents'"), {"v": value})
        if done.rowcount == 0:
            conn.execute(sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES ('documents', :v)"), {"v": value})
    elif dialect == "postgresql":
        conn.execute(sa.text("SELECT setval(CAST(:s AS regclass), :v, true)"),
                     {"s": _pg_sequence(conn), "v": value})
