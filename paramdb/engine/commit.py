"""The write protocol: the only code that adds or removes rows, swaps a row's adapter or drops orphan blobs.

Writes go blobs first (LMDB: adapter + embedding, committed), then the metadata row (SQL, committed: the
commit point), then the derived indexes. A crash at any point leaves at worst an orphan blob or a stale index
(rebuilt on open), never a row that points at nothing. Each blob key is new, so an upsert never overwrites a
live one. Deletes commit the SQL row first; the blobs after it are garbage.

A pending row (``insert(parameterize="later")``) is written the same way with no adapter: its blob key holds
only its embedding, and its SQL row says ``adapter_kind="pending"``. Training it later (ops/refine.py) writes
a new blob key with the adapter and a copy of the embedding and swaps it in (:func:`swap_adapters`), so a
pending row never changes in place either; ``paramdb compact`` converts adapters the same way.
"""
from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterable

import numpy as np

from ..errors import ParamDBError
from ..storage.codec import encode_adapter, encode_vector
from ..storage.meta import PENDING
from ..types import Document
from .store import Store


def commit_batch(store: Store, batch: list[Document], vectors: np.ndarray,
                 adapters: list[dict[str, np.ndarray]] | None, upsert: bool = False, kind: str = "trained") -> None:
    """Write one parameterized batch atomically, under the writer lock: work done elsewhere (another
    process, a Ray worker) becomes rows here and nowhere else. ``adapters`` None writes pending rows (their
    embeddings only; ``kind`` must then be "pending")."""
    if (adapters is None) != (kind == PENDING):
        raise ValueError(f"adapter kind {kind!r} with{'out' if adapters is None else ''} adapters")
    with store.lock.held("insert"):
        gen_before = store.indexes.sync()
        keys = [uuid.uuid4().hex for _ in batch]
        dtype = store.config.adapter_dtype             # each blob records its own: a store may hold both
        store.blobs.put({} if adapters is None else
                        {k: encode_adapter(a, dtype, {"doc_id": d.id}) for k, a, d in zip(keys, adapters, batch)},
                        {k: encode_vector(v) for k, v in zip(keys, vectors)})
        rows = [{"id": d.id, "text": d.text, "metadata": d.metadata, "blob_key": k, "created_at": time.time(),
                 "adapter_kind": kind} for d, k in zip(batch, keys)]
        try:
            if upsert:
                rowids, replaced = store.meta.upsert(rows)
            else:
                rowids, replaced = store.meta.insert(rows), []
        except BaseException:
            with contextlib.suppress(ParamDBError):   # the row never existed: its blobs are orphans now, and
                store.blobs.delete(keys)              # left as such (check tidies them) if even this fails
            raise
        store.blobs.delete(replaced)
        for k in replaced:
            store.cache.discard(k)
        store.indexes.added(gen_before, rowids, vectors, [d.text for d in batch])


def delete(store: Store, ids: Iterable[str]) -> int:
    """Remove rows by id (UnknownId, and nothing removed, if one is not stored); returns how many."""
    with store.lock.held("delete"):
        gen_before = store.indexes.sync()
        removed = store.meta.delete(list(ids))          # committed here: blobs after it are garbage
        store.blobs.delete([k for _, k in removed])
        for _, k in removed:
            store.cache.discard(k)
        store.indexes.removed(gen_before, [r for r, _ in removed])
    store.indexes.save()
    return len(removed)


def swap_adapters(store: Store, moves: list[tuple[str, str, str, str]], gen_before: int) -> list[tuple[str, str]]:
    """Point rows at adapters already written under new blob keys; the caller holds the writer lock.

    ``moves`` are (id, old key, new key, adapter kind). The SQL swap is the commit point and a compare-and-swap
    on the old key, so a row changed or deleted meanwhile keeps what it has; the blobs no row points at
    afterwards (the old keys swapped out, the new keys not swapped in) are deleted. Returns (id, old key) of
    each row swapped. Texts and embeddings do not change, so the derived indexes stay current."""
    done = store.meta.swap_adapters(moves)
    swapped = set(done)
    unused = [new for doc_id, old, new, _ in moves if (doc_id, old) not in swapped]
    store.blobs.delete([old for _, old in done] + unused)
    for _, old in done:
        store.cache.discard(old)
    if done:
        store.indexes.unchanged(gen_before)
    return done


def orphan_blobs(store: Store) -> list[str]:
    """Blob keys no row points at: what a write killed between its LMDB and SQL commits leaves behind. Only
    under the writer lock is this list safe to delete (a writer between its two commits looks the same)."""
    live = {key for _, _, key in store.meta.all_rows_keys()}
    return sorted((set(store.blobs.keys("adapters")) | set(store.blobs.keys("embeddings"))) - live)


def delete_orphans(store: Store) -> int:
    """Delete the orphan blobs; the caller holds the writer lock. Returns how many keys went."""
    orphans = orphan_blobs(store)
    if orphans:
        store.blobs.delete(orphans)
    return len(orphans)
