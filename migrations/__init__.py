"""Alembic migrations that own the metadata database's SQL schema (one revision per schema change).

Alembic's own layout (``env.py``, ``versions/``, ``script.py.mako``) at the repository root; the wheel ships
it as the package ``paramdb.migrations`` (pyproject.toml ``package-dir``) so an installed ParamDB can migrate
stores. Run them through :mod:`paramdb.storage.schema`, never the alembic CLI.
"""
