"""Store format 1: the schema ParamDB 0.1.0 created with ``MetaData.create_all`` (before Alembic).

A format-1 store has these tables but no ``alembic_version``; migrating stamps it at this revision first.
Kept byte-for-byte equal to what format 1 made (tests/test_migrate.py compares the SQL).

Revision ID: 0001
Revises:
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "store_info",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "documents",
        sa.Column("rowid", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(256), unique=True, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("metadata", sa.JSON, nullable=False),
        sa.Column("blob_key", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("documents")
    op.drop_table("store_info")
