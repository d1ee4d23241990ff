"""``paramdb migrate``: upgrade a store of any earlier format to the one this ParamDB reads.

Three steps, each one idempotent and committed before the next begins, and the new format recorded in the
marker only after all of them; a process killed anywhere therefore leaves a store whose rows are exactly
the committed ones, and rerunning migrate finishes the job:

1. SQL schema (Alembic, one transaction): stamp a format-1 database at the baseline, upgrade to the
   head, back-fill ``documents.text_sha256``.
2. LMDB values: each blob-format step re-encodes values under new keys in bounded write transactions and
   then points the rows at them in one SQL transaction (no step rewrites anything yet: formats 2 and 3 keep
   format 1's values, which stay readable). Then a read-only pass checks every row's adapter CRC and embedding
   length.
3. Record: ``store_info`` 'blob_format' and the config as this format writes it (its format version; the
   default embedder named 'default'), then the marker file, last.

It holds the store's writer lock throughout, so no writer of this version interleaves; a writer of the old
version does not know the lock, which is why step 1's back-fill also covers rows added after it ran.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from paramdb.config import FORMAT_VERSION
from paramdb.engine.store import open_store
from paramdb.errors import CorruptData, FormatError
from paramdb.storage.blobs import BlobStore
from paramdb.storage.codec import BLOB_FORMAT, decode_tensors
from paramdb.storage.lock import DEFAULT_TIMEOUT
from paramdb.storage.meta import PENDING, MetaStore

_FORMAT1_DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
_VERIFY_CHUNK = 256  # rows per LMDB read transaction in the verification pass

# blob format n -> the step that rewrites a store's values from format n to n + 1 (see module docstring).
BlobStep = Callable[[MetaStore, BlobStore], None]


def _blob_1_to_2(meta: MetaStore, blobs: BlobStore) -> None:
    """Blob format 2 adds int8 adapters beside float16 ones; a format-1 value is a format-2 value as it is.
    Converting a store's adapters to int8 is the operator's choice: `paramdb compact` (paramdb/ops/compact.py)."""


BLOB_STEPS: dict[int, BlobStep] = {1: _blob_1_to_2}


@dataclass
class MigrateReport:
    path: str
    format_before: int
    format_after: int
    schema_before: str | None
    schema_after: str
    blob_format_before: int
    blob_format_after: int
    rows: int
    damaged: list[str] = field(default_factory=list)   # ids whose adapter or embedding failed the check

    @property
    def changed(self) -> bool:
        return (self.format_before, self.schema_before, self.blob_format_before) != \
            (self.format_after, self.schema_after, self.blob_format_after)


def migrate(path: str | Path, *, lock_timeout: float = DEFAULT_TIMEOUT) -> MigrateReport:
    """Upgrade the store at ``path`` in place; a store already at this format is only re-verified."""
    store = open_store(path, lock_timeout=lock_timeout, migrating=True)   # refuses a newer format
    layout, meta, blobs, version = store.layout, store.meta, store.blobs, store.format_version
    with store, store.lock.held("migrate"):
        schema_before, schema_after = meta.upgrade_schema()                     # step 1
        blob_before = int(meta.get_info("blob_format", 1))
        config = meta.get_info("config")
        if not isinstance(config, dict):
            raise FormatError(f"store {layout.root} has no config in its metadata; it is not a ParamDB store")
        for n in range(blob_before, BLOB_FORMAT):                               # step 2
            if n not in BLOB_STEPS:
                raise FormatError(f"store {layout.root} has blob format {n}, which this ParamDB cannot convert")
            BLOB_STEPS[n](meta, blobs)
            meta.set_info("blob_format", n + 1)
        if blob_before > BLOB_FORMAT:
            raise FormatError(f"store {layout.root} has blob format {blob_before}, newer than this "
                              f"ParamDB reads ({BLOB_FORMAT}); upgrade ParamDB")
        rows, damaged = _verify(meta, blobs, int(config["embedding_dim"]))
        meta.set_info("blob_format", BLOB_FORMAT)                              # step 3
        upgraded = upgrade_config(config)
        if upgraded != config:
            meta.set_info("config", upgraded)
        if version != FORMAT_VERSION:
            layout.set_format_version(FORMAT_VERSION)
    return MigrateReport(str(layout.root), version, FORMAT_VERSION, schema_before, schema_after,
                         blob_before, BLOB_FORMAT, rows, damaged)


def upgrade_config(config: dict) -> dict:
    """The stored config as this format writes it.

    Format 1 recorded the packaged default embedder by its name, 'all-MiniLM-L6-v2', which later opens
    read as a relative path; format 2 records 'default'. Format 3 records the adapter dtype; a store made
    before it kept float16 adapters, and keeps doing so. Any embedder given by path was stored absolute,
    so a bare name can only be the default.
    """
    out = {**config, "format_version": FORMAT_VERSION}
    out.setdefault("adapter_dtype", "float16")     # format 3: the dtype new adapters are kept in
    if out.get("embedder") == _FORMAT1_DEFAULT_EMBEDDER:
        out["embedder"] = "default"
    return out


def _verify(meta: MetaStore, blobs: BlobStore, dim: int) -> tuple[int, list[str]]:
    """Check every row's adapter (safetensors + CRC32) and embedding (dim float32s); return damaged ids. A
    pending row (insert --defer) has no adapter yet: only its embedding is checked."""
    keys = meta.all_rows_keys()
    pending = meta.blob_keys_of_kind(PENDING)
    damaged: list[str] = []
    for start in range(0, len(keys), _VERIFY_CHUNK):
        with blobs.reader() as r:
            for _rowid, doc_id, key in keys[start:start + _VERIFY_CHUNK]:
                adapter, vector = r.adapter(key), r.embedding(key)
                try:
                    if vector is None or len(vector) != 4 * dim or (adapter is None and key not in pending):
                        raise CorruptData(doc_id)
                    if adapter is not None:
                        decode_tensors(adapter, verify=True)
                except CorruptData:
                    damaged.append(doc_id)
    return len(keys), damaged
