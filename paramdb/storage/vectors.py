"""hnswlib index over row embeddings: derived data, rebuilt whenever it is missing or stale.

The index is never the source of truth (LMDB embeddings are), so it is saved without fsync and a sidecar
JSON records the metadata ``generation`` it reflects; a mismatch on open means "rebuild", never "repair".
Labels are the metadata ``rowid`` integers.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import hnswlib
import numpy as np

from paramdb.errors import InvalidInput

BRUTE_FORCE_MAX = 2048  # an allowed set this small is searched exactly: faster and never misses
_BATCH = 4096


class VectorIndex:
    """Approximate nearest neighbours by cosine similarity over integer labels."""

    def __init__(self, path: str | Path, dim: int, space: str = "cosine", capacity: int = 1024):
        self.path = Path(path)
        self.sidecar = Path(f"{self.path}.json")
        self.dim, self.space = int(dim), space
        self._capacity0 = max(16, int(capacity))
        self._reset()

    def _reset(self, capacity: int | None = None) -> None:
        self._index = hnswlib.Index(space=self.space, dim=self.dim)
        self._index.init_index(max_elements=capacity or self._capacity0, M=16, ef_construction=200)
        self._live: set[int] = set()
        self._deleted: set[int] = set()  # hnswlib cannot list its tombstones, so we track them

    def __len__(self) -> int:
        return len(self._live)

    def labels(self) -> set[int]:
        return set(self._live)

    # -- persistence ----------------------------------------------------------------------------------
    def load_or_none(self, generation: int) -> bool:
        """Load the saved index if it reflects exactly ``generation``; False means the caller rebuilds."""
        try:
            info = json.loads(self.sidecar.read_text())
            if (info.get("generation") != generation or info.get("dim") != self.dim
                    or info.get("space") != self.space or not self.path.exists()):
                return False
            index = hnswlib.Index(space=self.space, dim=self.dim)
            index.load_index(str(self.path))
            labels = {int(x) for x in index.get_ids_list()}
            deleted = {int(x) for x in info.get("deleted", [])}
            if not deleted <= labels or len(labels) - len(deleted) != info.get("count"):
                return False
        except (OSError, ValueError, RuntimeError, TypeError, AttributeError):
            return False  # missing, unreadable or corrupt: derived data, so just rebuild
        self._index, self._deleted, self._live = index, deleted, labels - deleted
        return True

    def save(self, generation: int) -> None:
        """Atomic: the sidecar goes first and comes back last, so no crash pairs an index with the
        wrong generation."""
        self.sidecar.unlink(missing_ok=True)
        tmp = Path(f"{self.path}.tmp")
        self._index.save_index(str(tmp))
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)
        info = {"generation": int(generation), "dim": self.dim, "space": self.space,
                "count": len(self._live), "deleted": sorted(self._deleted)}
        tmp_side = Path(f"{self.sidecar}.tmp")
        tmp_side.write_text(json.dumps(info))
        os.chmod(tmp_side, 0o600)
        os.replace(tmp_side, self.sidecar)

    # -- writes ---------------------------------------------------------------------------------------
    def build(self, items: Iterable[tuple[int, np.ndarray]]) -> None:
        """Start from scratch (drops tombstones) and add ``items`` in batches."""
        self._reset()
        labels: list[int] = []
        vecs: list[np.ndarray] = []
        for label, vec in items:
            labels.append(int(label))
            vecs.append(np.asarray(vec, dtype=np.float32))
            if len(labels) >= _BATCH:
                self.add(labels, np.stack(vecs))
                labels, vecs = [], []
        if labels:
            self.add(labels, np.stack(vecs))

    def add(self, labels: list[int], vectors: np.ndarray) -> None:
        """Insert or replace (hnswlib updates a known label in place, and revives a removed one)."""
        if not len(labels):
            return
        vectors = np.asarray(vectors, dtype=np.float32)
        vectors = vectors[None] if vectors.ndim == 1 else vectors
        if vectors.shape != (len(labels), self.dim):
            raise InvalidInput(f"vectors have shape {vectors.shape}, expected ({len(labels)}, {self.dim})")
        last = {int(lab): i for i, lab in enumerate(labels)}  # a label twice in one batch: last wins
        labs, rows = list(last), list(last.values())
        new = sum(1 for lab in labs if lab not in self._live and lab not in self._deleted)
        need = self._index.get_current_count() + new
        cap = self._index.get_max_elements()
        if need > cap:
            cap = max(cap, self._capacity0)      # an index saved empty loads with capacity 0: 0 * 2 is 0
            while cap < need:
                cap *= 2
            self._index.resize_index(cap)
        self._index.add_items(vectors[rows], np.asarray(labs, dtype=np.int64))
        self._live.update(labs)
        self._deleted.difference_update(labs)

    def remove(self, labels: Iterable[int]) -> None:
        """Tombstone labels; unknown or already removed ones are ignored."""
        for lab in labels:
            lab = int(lab)
            if lab in self._live:
                self._index.mark_deleted(lab)
                self._live.discard(lab)
                self._deleted.add(lab)

    # -- search ---------------------------------------------------------------------------------------
    def _score(self, dist: np.ndarray) -> np.ndarray:
        return -dist if self.space == "l2" else 1.0 - dist

    def search(self, vector: np.ndarray, k: int, allowed: set[int] | None = None,
               vectors_for: Callable[[list[int]], np.ndarray] | None = None) -> list[tuple[int, float]]:
        """(label, similarity) best first; similarity is 1 - cosine distance.

        A small ``allowed`` set is scored exactly against ``vectors_for(labels)`` (or, without it, the
        vectors hnswlib holds: normalized, which is all cosine needs); a large one goes through hnswlib's
        filter. If hnswlib cannot return k results (sparse filter, many tombstones) we fall back to exact.
        """
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if query.shape[0] != self.dim:
            raise InvalidInput(f"query has dimension {query.shape[0]}, the index expects {self.dim}")
        pool = self._live if allowed is None else self._live.intersection(int(a) for a in allowed)
        k = min(int(k), len(pool))
        if k <= 0:
            return []
        if allowed is not None and len(pool) <= BRUTE_FORCE_MAX:
            return self._exact(query, sorted(pool), k, vectors_for)
        self._index.set_ef(max(64, 2 * k))
        try:
            filt = None if allowed is None else (lambda lab: lab in pool)
            labels, dists = self._index.knn_query(query, k=k, filter=filt)
        except RuntimeError:
            return self._exact(query, sorted(pool), k, vectors_for)
        return [(int(lab), float(s)) for lab, s in zip(labels[0], self._score(dists[0]))]

    def _exact(self, query: np.ndarray, labels: list[int], k: int,
               vectors_for: Callable[[list[int]], np.ndarray] | None) -> list[tuple[int, float]]:
        vecs = np.asarray(vectors_for(labels) if vectors_for else self._index.get_items(labels), np.float32)
        if self.space == "l2":
            scores = -((vecs - query) ** 2).sum(axis=1)
        elif self.space == "ip":
            scores = vecs @ query
        else:
            norms = np.linalg.norm(vecs, axis=1) * (np.linalg.norm(query) or 1.0)
            scores = (vecs @ query) / np.where(norms == 0, 1.0, norms)
        top = np.argpartition(-scores, k - 1)[:k] if k < len(labels) else np.arange(len(labels))
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(labels[i], float(scores[i])) for i in top]
