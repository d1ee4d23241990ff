"""Opening and creating a store: the one place that knows which files make a store and how to open them.

Every path that touches a store's files goes through :func:`open_store` (ParamDB, backup, verify, check,
copy, migrate, the Ray driver), so a change to the layout (a new part, another check on open) is made once.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import FORMAT_VERSION, StoreConfig
from ..errors import FormatError, StoreExists
from ..knowledge.inject import AdapterCache
from ..layout import Layout
from ..storage.blobs import BlobStore
from ..storage.lock import DEFAULT_TIMEOUT, WriterLock
from ..storage.meta import MetaStore
from .indexes import DerivedIndexes


@dataclass
class Store:
    """The parts of one open store. ``config`` is None only for a store opened to be migrated, whose config
    may be in an older shape; ``indexes``, ``cache`` and ``translator`` are derived, per handle, and never the truth."""

    layout: Layout
    meta: MetaStore
    blobs: BlobStore
    lock: WriterLock
    config: StoreConfig | None
    format_version: int
    indexes: DerivedIndexes | None = None
    cache: AdapterCache | None = None
    translator: object | None = None       # the stored translator once loaded (engine/translator_blob.cached)

    @property
    def path(self) -> Path:
        return self.layout.root

    def close(self) -> None:
        if self.indexes is not None:
            self.indexes.save()
        self.lock.close()
        self.blobs.close()
        self.meta.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_store(path: str | Path, *, meta_url: str | None = None, lock_timeout: float = DEFAULT_TIMEOUT,
               readonly: bool = False, migrating: bool = False) -> Store:
    """Open the store at ``path``. Its format must be this ParamDB's, except with ``migrating``, which
    accepts any older format (and leaves ``config`` unread: ``paramdb migrate`` upgrades it). ``meta_url``
    overrides the metadata URL recorded in the marker. ``readonly`` opens every part read-only and refuses
    writes (ReadOnlyStore); it is also what a store whose files this process cannot write gets."""
    layout = Layout(Path(path))
    if migrating:
        version, url = layout.read_marker()
        if version > FORMAT_VERSION:
            raise FormatError(f"store {layout.root} has format {version}, newer than this ParamDB reads "
                              f"(format {FORMAT_VERSION}); upgrade ParamDB")
    else:
        url, version = layout.read(FORMAT_VERSION), FORMAT_VERSION  # checks the format even when overridden
    reason = layout.readonly_reason(readonly)
    meta = MetaStore(meta_url or url, readonly=reason is not None)
    try:
        config = None if migrating else StoreConfig.from_json(meta.get_info("config"))
        blobs = BlobStore(layout.blobs, readonly=reason is not None)
    except BaseException:
        meta.close()
        raise
    return _assembled(layout, meta, blobs, config, version, lock_timeout, reason)


def create_store(path: str | Path, config: StoreConfig, *, meta_url: str | None = None,
                 lock_timeout: float = DEFAULT_TIMEOUT) -> Store:
    """Make a new, empty store at ``path`` recording ``config``; refuses (StoreExists) if one is there.
    A failed create leaves the path as it found it, so a retry can succeed."""
    layout = Layout(Path(path))
    if layout.exists():
        raise StoreExists(f"a store already exists at {layout.root}")
    made_dir = not layout.root.exists()
    url = layout.create(FORMAT_VERSION, meta_url)
    meta = blobs = None
    try:
        meta = MetaStore(url)
        meta.create_all()
        meta.set_info("config", config.to_json())
        blobs = BlobStore(layout.blobs)
        layout.commit_marker()
    except BaseException:
        for part in (blobs, meta):
            if part is not None:
                part.close()
        layout.discard(made_dir)
        raise
    return _assembled(layout, meta, blobs, config, FORMAT_VERSION, lock_timeout)


def _assembled(layout: Layout, meta: MetaStore, blobs: BlobStore, config: StoreConfig | None, version: int,
               lock_timeout: float, readonly: str | None = None) -> Store:
    lock = WriterLock(layout.writer_lock, lock_timeout, readonly=readonly)
    indexes = DerivedIndexes(layout, config.embedding_dim, meta, blobs, lock) if config is not None else None
    return Store(layout, meta, blobs, lock, config, version, indexes, AdapterCache())
