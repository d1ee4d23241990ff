"""``paramdb compact STORE [--adapter-dtype int8]``: convert a store's adapters to another dtype, in place.

The operator's explicit step for an existing store (``migrate`` keeps adapters as they are); new stores choose
at creation (``paramdb init --adapter-dtype int8``). The store's config records the new dtype, so rows added
afterwards (and rows ``check --repair`` rebuilds) are written in it too.

Crash safety is that of every write, a chunk of rows at a time: the converted adapters go to LMDB under new
keys (each with a copy of its row's embedding) and commit; then the chunk's rows are pointed at them in one
SQL transaction (the commit point: ``engine.commit.swap_adapters``, keeping each row's adapter kind); then the
old blobs are deleted. A process killed anywhere leaves every row pointing at a complete adapter, old or new,
plus at worst orphan blobs, which the next ``compact`` (or ``check --repair``) deletes; rerunning converts
only the rows still in the old dtype. A row whose adapter fails its
checksum is not converted (that would freeze the damage): it is reported, for ``check --repair``. A pending
row (``insert --defer``) has no adapter to convert: it is left as it is, and ``refine`` later writes its adapter
in the store's new dtype.

LMDB never shrinks its file: the pages the old adapters held stay in it, free, and later inserts fill them.
A file of the new size is what ``paramdb copy`` (a compacting LMDB copy) or backup and restore write.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

from paramdb.engine import commit
from paramdb.engine.store import open_store
from paramdb.errors import CorruptData
from paramdb.storage import codec
from paramdb.storage.blobs import BlobStore
from paramdb.storage.lock import DEFAULT_TIMEOUT
from paramdb.storage.meta import PENDING

# Rows per LMDB write and SQL transaction. Bounds memory and how far the LMDB file grows: the pages a chunk frees
# are reused by the next (20 default-model rows: 31 MB file -> 34 MB in chunks of 2, 46 MB in one chunk).
CHUNK = 32


@dataclass
class CompactReport:
    path: str
    adapter_dtype: str
    rows: int
    converted: int
    adapter_bytes_before: int
    adapter_bytes_after: int
    orphans_deleted: int = 0
    damaged: list[str] = field(default_factory=list)   # ids whose adapter failed its checksum: not converted
    pending: int = 0                                    # rows with no adapter yet (insert --defer): nothing to convert

    @property
    def ratio(self) -> float:
        return self.adapter_bytes_after / self.adapter_bytes_before if self.adapter_bytes_before else 1.0


def compact(path: str | Path, adapter_dtype: str = "int8", *, chunk: int = CHUNK,
            lock_timeout: float = DEFAULT_TIMEOUT) -> CompactReport:
    """Rewrite every adapter of the store at ``path`` that is not in ``adapter_dtype`` into it."""
    target = codec.check_adapter_dtype(adapter_dtype)
    with open_store(path, lock_timeout=lock_timeout) as store, store.lock.held("compact"):
        meta, blobs = store.meta, store.blobs
        orphans = commit.delete_orphans(store)
        before = blobs.value_bytes("adapters")
        pending = meta.blob_keys_of_kind(PENDING)
        rows = [r for r in meta.all_rows_keys() if r[2] not in pending]
        converted, damaged = 0, []
        gen = store.indexes.sync()          # texts and embeddings do not change: the indexes stay current
        for start in range(0, len(rows), chunk):
            moves, bad = _convert_chunk(blobs, rows[start:start + chunk], target)
            damaged += bad
            kinds = {r["id"]: r["adapter_kind"] for r in meta.get([doc_id for doc_id, _, _ in moves])}
            done = commit.swap_adapters(store, [(doc_id, old, new, kinds.get(doc_id, "trained"))
                                                for doc_id, old, new in moves], gen)
            if done:
                gen = store.indexes.generation
            converted += len(done)
        config = meta.get_info("config")
        if config.get("adapter_dtype", "float16") != target:
            meta.set_info("config", {**config, "adapter_dtype": target})
        after = blobs.value_bytes("adapters")
    return CompactReport(str(store.path), target, len(rows) + len(pending), converted, before, after, orphans,
                         damaged, len(pending))


def _convert_chunk(blobs: BlobStore, rows, target: str) -> tuple[list[tuple[str, str, str]], list[str]]:
    """Write converted copies of a chunk's adapters under new keys; return (id, old, new) and damaged ids."""
    adapters, embeddings, moves, damaged = {}, {}, [], []
    with blobs.reader() as r:
        for _rowid, doc_id, key in rows:
            buf, vector = r.adapter(key), r.embedding(key)
            if buf is None or vector is None:
                damaged.append(doc_id)
                continue
            try:
                if codec.adapter_dtype(buf) == target:
                    continue
                tensors = codec.decode_tensors(buf, verify=True)
            except CorruptData:
                damaged.append(doc_id)
                continue
            new = uuid.uuid4().hex
            adapters[new] = codec.encode_adapter(tensors, target, {"doc_id": doc_id})
            embeddings[new] = bytes(vector)
            moves.append((doc_id, key, new))
    if moves:
        blobs.put(adapters, embeddings)
    return moves, damaged


