"""Store format 3: ``documents.adapter_kind``, how each row's adapter was made.

``trained`` (LoRA trained on the document's own samples) or ``translated`` (written in one forward pass by
the store's translator, paramdb/knowledge/translator.py); ``paramdb refine`` turns the second into the first.
Every row written before this revision was trained, so they are filled with ``trained`` here. Nullable at the
SQL level for the reason 0002 gives (SQLite cannot add a NOT NULL column without rebuilding the table).

Revision ID: 0003
Revises: 0002
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("documents", sa.Column("adapter_kind", sa.String(16), nullable=True))
    op.execute("UPDATE documents SET adapter_kind = 'trained' WHERE adapter_kind IS NULL")


def downgrade() -> None:
    op.drop_column("documents", "adapter_kind")   # development only; SQLite >= 3.35
