"""``documents.text_sha256``: the hex SHA-256 of a row's text, written with the row and back-filled by
migration, so ``paramdb check`` can tell a text damaged in place from an intact one.

The back-fill names its columns itself (``sa.table``) rather than using ``meta.documents``: a migration
must keep working when the current model grows columns its revision has never heard of.
"""
from __future__ import annotations

import hashlib

import sqlalchemy as sa
from sqlalchemy.engine import Connection

_CHUNK = 500
_documents = sa.table("documents", sa.column("rowid", sa.Integer), sa.column("text", sa.Text),
                      sa.column("text_sha256", sa.String))


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fill_text_sha256(conn: Connection) -> int:
    """Set ``text_sha256`` on every row that lacks it, in the caller's transaction; returns how many.

    Pages by rowid so memory stays bounded; idempotent, so a rerun after a kill simply finishes the job.
    """
    done, last = 0, -1
    while True:
        rows = conn.execute(sa.select(_documents.c.rowid, _documents.c.text)
                            .where(_documents.c.text_sha256.is_(None), _documents.c.rowid > last)
                            .order_by(_documents.c.rowid).limit(_CHUNK)).all()
        if not rows:
            return done
        conn.execute(sa.update(_documents).where(_documents.c.rowid == sa.bindparam("r"))
                     .values(text_sha256=sa.bindparam("h")),
                     [{"r": rowid, "h": text_sha256(text)} for rowid, text in rows])
        done += len(rows)
        last = rows[-1][0]
