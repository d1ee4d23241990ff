"""``paramdb refine``: train the rows that have no trained adapter yet while the store stays in use.

Two kinds of row wait for it: pending rows (``insert --defer``: an embedding, no adapter) and translated rows
(``insert --translate``: an adapter written in one forward pass). Pending rows go first, since nothing but
their passage answers for them; within a kind, oldest first. Each batch is trained with the batched trainer.

Training runs with no lock held; only the commit of each batch takes the writer lock. A row is swapped only
if it still points at the blob it was read with (MetaStore.swap_adapters: compare-and-swap on the blob key),
so an upsert or delete that happened meanwhile wins. New blobs (the adapter and a copy of the row's embedding,
under a new key) are written before the SQL swap (the commit point) and the old ones deleted after it, so a
kill at any moment leaves every row as it was or trained, never pointing at nothing, and at worst orphan
blobs (`check --repair`). A rerun picks up the rows still pending or translated: it resumes.

``watch=True`` (``refine --watch``) keeps going: when nothing is left it waits ``interval`` seconds and looks
again, until ``stop`` is set (the CLI sets it on SIGINT/SIGTERM: the batch in training is finished and
committed, then it returns) or a KeyboardInterrupt abandons the batch in training (nothing of it is written:
the interrupted result says so).
"""
from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

from paramdb import validate
from paramdb.engine import commit
from paramdb.engine.models import Models
from paramdb.engine.store import Store
from paramdb.knowledge.augment import build_samples
from paramdb.knowledge.train import train_adapters
from paramdb.storage.codec import encode_adapter
from paramdb.storage.meta import PENDING

Progress = Callable[[int, int], None]
KINDS = (PENDING, "translated")      # what refine trains, in this order


@dataclass
class RefineResult:
    refined: int = 0
    skipped: list[str] = field(default_factory=list)   # changed or deleted while being trained: left as is
    remaining: int = 0                                 # pending + translated rows left when it returned
    pending: int = 0                                   # ... of which pending
    translated: int = 0                                # ... of which translated
    batches: int = 0
    seconds: float = 0.0
    interrupted: bool = False      # a KeyboardInterrupt abandoned the batch in training (nothing of it written)


def waiting(meta) -> int:
    kinds = meta.adapter_kinds()
    return sum(kinds[k] for k in KINDS)


def refine(store: Store, models: Models, *, batch_size: int = 8, limit: int | None = None, progress: Progress | None = None,
           watch: bool = False, interval: float = 5.0, stop: threading.Event | None = None,
           on_batch: Callable[[RefineResult], None] | None = None) -> RefineResult:
    validate.refine_args(batch_size, limit, interval)
    store.lock.refuse_if_readonly("refine")          # before any model is loaded or trained
    stop = stop or threading.Event()
    meta = store.meta
    result, tried = RefineResult(), set()
    t0 = time.monotonic()
    total = -1 if watch else waiting(meta) if limit is None else min(limit, waiting(meta))
    if progress:
        progress(0, total)
    try:
        while not stop.is_set() and (limit is None or result.refined + len(result.skipped) < limit):
            want = batch_size if limit is None else min(batch_size, limit - result.refined - len(result.skipped))
            rows = [r for r in meta.rows_of_kind(KINDS, want + len(tried)) if (r["id"], r["blob_key"]) not in tried]
            rows = rows[:want]
            if not rows:
                if not watch:
                    break
                stop.wait(interval)          # new rows may arrive from any writer; look again
                continue
            tried.update((r["id"], r["blob_key"]) for r in rows)
            samples = build_samples(models.lm, [r["text"] for r in rows], store.config.augment)
            adapters = train_adapters(models.lm, samples, [r["id"] for r in rows], store.config.training)
            done = _commit(store, rows, adapters, result)
            tried -= {(r["id"], r["blob_key"]) for r in rows if r["id"] in done}   # only skipped rows stay out
            result.batches += 1
            _left(meta, result)
            if progress:
                progress(result.refined + len(result.skipped), total)
            if on_batch:
                on_batch(result)
    except KeyboardInterrupt:
        result.interrupted = True
    _left(meta, result)
    result.seconds = round(time.monotonic() - t0, 3)
    return result


def _left(meta, result: RefineResult) -> None:
    kinds = meta.adapter_kinds()
    result.pending, result.translated = kinds[PENDING], kinds["translated"]
    result.remaining = result.pending + result.translated


def _commit(store: Store, rows: list[dict], adapters: list[dict], result: RefineResult) -> set[str]:
    """Swap the trained adapters in under the writer lock; returns the ids swapped."""
    keys = [uuid.uuid4().hex for _ in rows]
    with store.lock.held("refine"):
        gen_before = store.indexes.sync()
        vectors = {}
        for k, r in zip(keys, rows):
            v = store.blobs.get_embedding(r["blob_key"])
            if v is not None:                    # a row deleted meanwhile has none: it will not be swapped
                vectors[k] = v
        dtype = store.config.adapter_dtype
        store.blobs.put({k: encode_adapter(a, dtype, {"doc_id": r["id"]}) for k, a, r in zip(keys, adapters, rows)
                         if k in vectors}, vectors)
        swapped = commit.swap_adapters(store, [(r["id"], r["blob_key"], k, "trained")
                                               for k, r in zip(keys, rows) if k in vectors], gen_before)
    done = {doc_id for doc_id, _ in swapped}
    result.refined += len(done)
    result.skipped += [r["id"] for r in rows if r["id"] not in done]
    return done
