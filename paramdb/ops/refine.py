"""``paramdb refine``: replace translated adapters with trained ones while the store stays in use.

Training runs with no lock held; only the commit of each batch takes the writer lock. A row is swapped only
if it still points at the blob it was read with (MetaStore.swap_adapters: compare-and-swap on the blob key),
so an upsert or delete that happened meanwhile wins. New blobs are written before the SQL swap (the commit
point) and the old ones deleted after it, so a kill at any moment leaves every row with a readable adapter
and at worst orphan blobs (`check --repair`). A rerun picks up the rows still translated: it resumes.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Callable

from paramdb.errors import InvalidInput
from paramdb.knowledge.augment import build_samples
from paramdb.knowledge.train import train_adapters
from paramdb.storage.codec import encode_adapter

Progress = Callable[[int, int], None]


@dataclass
class RefineResult:
    refined: int = 0
    skipped: list[str] = field(default_factory=list)   # changed or deleted while being trained: left as is
    remaining: int = 0


def refine(db, *, batch_size: int = 8, limit: int | None = None, progress: Progress | None = None) -> RefineResult:
    if batch_size < 1:
        raise InvalidInput(f"batch size must be at least 1, got {batch_size}")
    if limit is not None and limit < 1:
        raise InvalidInput(f"limit must be at least 1, got {limit}")
    meta = db.store.meta
    result, tried = RefineResult(), set()
    total = meta.adapter_kinds()["translated"] if limit is None else min(limit, meta.adapter_kinds()["translated"])
    if progress:
        progress(0, total)
    while limit is None or result.refined + len(result.skipped) < limit:
        want = batch_size if limit is None else min(batch_size, limit - result.refined - len(result.skipped))
        rows = [r for r in meta.rows_of_kind("translated", want + len(tried)) if (r["id"], r["blob_key"]) not in tried]
        rows = rows[:want]
        if not rows:
            break
        tried.update((r["id"], r["blob_key"]) for r in rows)
        samples = build_samples(db.lm, [r["text"] for r in rows], db.config.augment)
        adapters = train_adapters(db.lm, samples, [r["id"] for r in rows], db.config.training)
        _commit(db, rows, adapters, result)
        if progress:
            progress(result.refined + len(result.skipped), total)
    result.remaining = meta.adapter_kinds()["translated"]
    return result


def _commit(db, rows: list[dict], adapters: list[dict], result: RefineResult) -> None:
    meta, blobs, lock = db.store.meta, db.store.blobs, db.store.lock
    keys = [uuid.uuid4().hex for _ in rows]
    with lock.held("refine"):
        gen_before = db.store.indexes.sync()
        vectors = {}
        for k, r in zip(keys, rows):
            v = blobs.get_embedding(r["blob_key"])
            if v is not None:                    # a row deleted meanwhile has none: it will not be swapped
                vectors[k] = v
        dtype = db.config.adapter_dtype
        blobs.put({k: encode_adapter(a, dtype, {"doc_id": r["id"]}) for k, a, r in zip(keys, adapters, rows)
                   if k in vectors}, vectors)
        swapped = meta.swap_adapters([(r["id"], r["blob_key"], k, "trained")
                                      for k, r in zip(keys, rows) if k in vectors])
        done = {doc_id for doc_id, _ in swapped}
        blobs.delete([old for _, old in swapped] + [k for k, r in zip(keys, rows) if r["id"] not in done])
        for _, old in swapped:
            db.store.cache.discard(old)
        if swapped:
            db.store.indexes.unchanged(gen_before)
    result.refined += len(done)
    result.skipped += [r["id"] for r in rows if r["id"] not in done]
