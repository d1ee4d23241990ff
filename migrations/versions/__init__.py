"""Alembic revision scripts, oldest first: 0001 is the schema of store format 1."""
