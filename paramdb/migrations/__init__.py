"""Alembic migrations that own the metadata database's SQL schema (one revision per schema change).

Inside the package (not at the repository root) so an installed ParamDB can migrate stores: Alembic finds
it as ``paramdb:migrations``. Run them through :mod:`paramdb.storage.schema`, never the alembic CLI.
"""
