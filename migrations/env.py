"""Alembic environment: runs on the connection ParamDB hands over, inside ParamDB's own transaction.

ParamDB calls ``alembic.command.upgrade`` with ``config.attributes["connection"]`` already in a
transaction, so the schema change, any row back-fill and the new ``alembic_version`` commit together or
not at all (a killed migrate leaves the old schema). For development (``alembic revision`` with a config
whose ``sqlalchemy.url`` is set) it opens its own engine instead.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from paramdb.storage.meta import metadata

config = context.config


def run(connection: sa.engine.Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


given = config.attributes.get("connection")
if given is not None:
    run(given)
else:
    with sa.create_engine(config.get_main_option("sqlalchemy.url"), poolclass=sa.pool.NullPool).connect() as conn:
        run(conn)
