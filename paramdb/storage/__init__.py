"""Storage layer: bytes on disk (LMDB), metadata (SQLAlchemy) and the derived vector index (hnswlib).

Nothing here knows about models or documents as objects; ``paramdb.knowledge`` and ``paramdb.engine`` build on
it, never the other way round, so the storage layer can be tested and repaired on its own.
"""
