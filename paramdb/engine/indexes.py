"""The derived indexes (dense hnswlib, lexical BM25): never the source of truth, always rebuildable.

Both are saved with the metadata ``generation`` they reflect. A handle applies its own writes to them
incrementally; when the generation moved by more than its own write (another process wrote), or a file is
missing or stale on open, the index is rebuilt from the rows (SQL) and embeddings (LMDB).
"""
from __future__ import annotations

import numpy as np

from .. import retrieval
from ..layout import Layout
from ..storage.blobs import BlobStore
from ..storage.codec import decode_vector
from ..storage.lexical import LexicalIndex
from ..storage.lock import WriterLock
from ..storage.meta import MetaStore
from ..storage.vectors import VectorIndex


class DerivedIndexes:
    def __init__(self, layout: Layout, dim: int, meta: MetaStore, blobs: BlobStore, lock: WriterLock):
        self._layout, self._dim, self._meta, self._blobs, self._lock = layout, dim, meta, blobs, lock
        self._dense: VectorIndex | None = None
        self._lexical: LexicalIndex | None = None
        self.generation = -1
        self._dirty = False

    def sync(self) -> int:
        """Bring both indexes in step with the metadata; returns the generation they now reflect."""
        gen = self._meta.generation()
        if self._dense is None:
            self._empty()
            dense_ok, lex_ok = self._dense.load_or_none(gen), self._lexical.load_or_none(gen)
            if dense_ok and lex_ok:
                self.generation = gen
            elif dense_ok or lex_ok:                  # rebuild only the one that is missing or stale
                self._rebuild(gen, dense=not dense_ok, lexical=not lex_ok)
        if self.generation != gen:
            self._rebuild(gen)
        return self.generation

    def added(self, gen_before: int, rowids: list[int], vectors: np.ndarray, texts: list[str]) -> None:
        if self._own_write(gen_before):
            self._dense.add(rowids, vectors)
            self._lexical.add(rowids, texts)

    def removed(self, gen_before: int, rowids: list[int]) -> None:
        if self._own_write(gen_before):
            self._dense.remove(rowids)
            self._lexical.remove(rowids)

    def unchanged(self, gen_before: int) -> None:
        """Our write moved the generation but changed no row's text or embedding (refine swapped adapters)."""
        self._own_write(gen_before)

    def _own_write(self, gen_before: int) -> bool:
        """True when the last write was ours alone (apply it incrementally); else rebuild and say False."""
        gen = self._meta.generation()
        if gen == gen_before + 1 and self._dense is not None:
            self.generation, self._dirty = gen, True
            return True
        self._dense = None
        self.sync()
        return False

    def search(self, method: str, text: str, vector, k: int, allowed: set[int] | None) -> list[tuple[int, float]]:
        """(rowid, score) best first. ``vector`` is a callable so lexical-only search never embeds."""
        self.sync()
        return retrieval.retrieve(method, k, dense=lambda n: self._dense.search(vector(), n, allowed=allowed),
                                  bm25=lambda n: self._lexical.search(text, n, allowed=allowed))

    def _rebuild(self, gen: int, dense: bool = True, lexical: bool = True) -> None:
        if dense:
            items = []
            with self._blobs.reader() as r:
                for rowid, _, key in self._meta.all_rows_keys():
                    buf = r.embedding(key)
                    if buf is not None:
                        items.append((rowid, decode_vector(buf)))
            self._dense.build(items)
        if lexical:
            self._lexical.build((row["rowid"], row["text"]) for row in self._meta.list())
        self.generation, self._dirty = gen, True

    def _empty(self) -> None:
        self._dense = VectorIndex(self._layout.vectors, self._dim)
        self._lexical = LexicalIndex(self._layout.lexical)

    def rebuild(self) -> None:
        """Rebuild both from the rows and save them (``paramdb check --repair``)."""
        if self._dense is None:
            self._empty()                      # not sync(): it could rebuild a stale pair only to redo it
        with self._lock.held("index rebuild"):
            self._rebuild(self._meta.generation())
            self.save()

    def save(self) -> None:
        """Saved under the writer lock so two processes never interleave their files; when another
        process is writing, or the store is read-only, skip: the files are a cache, and a later save or
        rebuild catches up."""
        if self._dense is None or not self._dirty:
            return
        with self._lock.try_held("index save") as taken:
            if taken:
                try:
                    self._dense.save(self.generation)
                    self._lexical.save(self.generation)
                except (OSError, RuntimeError):
                    return        # e.g. a full disk: a save that failed leaves no sidecar, so the next open rebuilds
                self._dirty = False

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self._layout.root.glob("*") if p.name.startswith(
            (self._layout.vectors.name, self._layout.lexical.name)))
