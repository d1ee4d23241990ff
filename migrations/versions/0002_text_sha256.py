"""Store format 2: ``documents.text_sha256``, the hex SHA-256 of each row's text.

``paramdb check`` compares it with the text to find rows damaged in place. Filled here for existing rows;
MetaStore writes it on every insert and upsert. Nullable at the SQL level because SQLite cannot add a
NOT NULL column without rebuilding the table (which would reset its AUTOINCREMENT counter and let a
deleted rowid be reused); ``paramdb migrate`` back-fills any NULL left by a format-1 writer.

Revision ID: 0002
Revises: 0001
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from paramdb.storage.hashes import fill_text_sha256

    op.add_column("documents", sa.Column("text_sha256", sa.String(64), nullable=True))
    fill_text_sha256(op.get_bind())


def downgrade() -> None:
    op.drop_column("documents", "text_sha256")   # development only; SQLite >= 3.35
