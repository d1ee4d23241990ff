"""The metadata database's SQL schema, owned by the Alembic revisions in ``migrations/`` (top level).

Everything runs on a connection the caller already holds in a transaction (Alembic's Python API, never
its CLI), so a schema upgrade commits with the caller's other work or not at all. New stores run the
revisions from empty, so a new store and a migrated one have the same schema by construction.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection

from paramdb.errors import FormatError

_PACKAGE = Path(__file__).resolve().parents[1]
BASELINE = "0001"  # the schema of store format 1, which predates Alembic (no alembic_version table)


def location() -> Path:
    """The Alembic folder. An installed ParamDB carries it inside the package (pyproject maps the top-level
    ``migrations/`` to ``paramdb.migrations``); a checkout has it beside the package. Found from the paramdb
    actually imported, so a checkout never runs another installation's revisions."""
    for folder in (_PACKAGE / "migrations", _PACKAGE.parent / "migrations"):
        if (folder / "env.py").is_file():
            return folder
    raise FormatError(f"this ParamDB has no migrations folder (looked in {_PACKAGE / 'migrations'} and "
                      f"{_PACKAGE.parent / 'migrations'}); reinstall it")


@lru_cache(maxsize=1)
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for ``alembic.command`` calls; with ``connection``, env.py runs on it."""
    cfg = Config()
    cfg.set_main_option("script_location", str(location()))
    cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    """The newest revision this ParamDB knows."""
    return _script().get_current_head()


def revision(conn: Connection) -> str | None:
    """The database's revision: None for an empty database, BASELINE for a format-1 one."""
    current = MigrationContext.configure(conn).get_current_revision()
    if current is None and sa.inspect(conn).has_table("documents"):
        return BASELINE
    return current


def has_tables(conn: Connection) -> bool:
    """Whether the database already holds a ParamDB store's tables (of any revision)."""
    insp = sa.inspect(conn)
    return any(insp.has_table(t) for t in ("documents", "store_info", "alembic_version"))


def upgrade(conn: Connection) -> tuple[str | None, str]:
    """Bring the schema to the head revision inside the caller's transaction; returns (from, to).

    A format-1 database is stamped at the baseline first, in the same transaction. A revision this
    ParamDB does not know (written by a newer one) raises FormatError instead of guessing.
    """
    before = revision(conn)
    target = head()
    if before is not None and before != target:
        try:
            _script().get_revision(before)
        except CommandError:
            raise FormatError(f"the metadata database is at schema revision {before!r}, which this ParamDB "
                              f"does not know (newest: {target}); upgrade ParamDB") from None
    if before == target:
        return before, target
    cfg = alembic_config(conn)
    if before == BASELINE and MigrationContext.configure(conn).get_current_revision() is None:
        command.stamp(cfg, BASELINE)
    command.upgrade(cfg, "head")
    return before, target
