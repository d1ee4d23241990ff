"""Where a store's parts live on disk, and the marker file that says a folder is a store.

    mystore/
      paramdb.json    marker: format version, metadata URL when it is not the local SQLite file
      meta.sqlite     SQL metadata (default; any SQLAlchemy URL may replace it)
      blobs.lmdb/     LMDB: adapters and embeddings
      vectors.hnsw    derived vector index (+ .json sidecar), rebuilt when missing or stale
      lexical.bm25    derived BM25 index (+ .json sidecar), same rule
      writer.lock     flock held by the one process committing a write; names its holder
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .errors import FormatError, StoreExists, StoreNotFound

MARKER = "paramdb.json"


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def marker(self) -> Path:
        return self.root / MARKER

    @property
    def blobs(self) -> Path:
        return self.root / "blobs.lmdb"

    @property
    def vectors(self) -> Path:
        return self.root / "vectors.hnsw"

    @property
    def lexical(self) -> Path:
        return self.root / "lexical.bm25"

    @property
    def writer_lock(self) -> Path:
        return self.root / "writer.lock"

    @property
    def default_meta_url(self) -> str:
        return f"sqlite:///{(self.root / 'meta.sqlite').resolve()}"

    def exists(self) -> bool:
        return self.marker.exists()

    def readonly_reason(self, requested: bool) -> str | None:
        """Why the store must be opened read-only, or None when this process may write it: asked for, or
        its folder or one of its files is not writable here (read-only media, a restored archive mounted
        read-only, another user's store). Opening such a store for writing would fail on the first read."""
        if requested:
            return "opened read-only"
        parts = (self.root, self.root / "meta.sqlite", self.blobs, self.blobs / "data.mdb", self.blobs / "lock.mdb",
                 self.writer_lock)
        if any(p.exists() and not os.access(p, os.W_OK) for p in parts):
            return "its files are not writable by this process"
        return None

    def create(self, format_version: int, meta_url: str | None) -> str:
        if self.exists():
            raise StoreExists(f"a store already exists at {self.root}")
        if self.root.exists() and any(self.root.iterdir()):
            raise StoreExists(f"{self.root} exists and is not empty; choose a new path for the store")
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        if meta_url is None:   # an empty file is an empty SQLite database: made here so it is 0600
            os.close(os.open(self.root / "meta.sqlite", os.O_WRONLY | os.O_CREAT, 0o600))
        info = {"format_version": format_version, "meta_url": meta_url}
        tmp = self.marker.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
        return meta_url or self.default_meta_url

    def discard(self, made_dir: bool) -> None:
        """Undo a create whose marker was never committed: remove the folder if create made it, else only
        what was put in it (it was empty before), so a retry finds the path as it was."""
        if made_dir:
            shutil.rmtree(self.root, ignore_errors=True)
        elif self.root.exists():
            for child in self.root.iterdir():
                shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)

    def read_marker(self) -> tuple[int, str]:
        """(format version, metadata URL) of an existing store, whatever its format."""
        if not self.exists():
            raise StoreNotFound(f"no store at {self.root} (create one with `paramdb init {self.root}`)")
        try:
            info = json.loads(self.marker.read_text())
            version = int(info["format_version"])
        except (ValueError, KeyError, TypeError):
            raise FormatError(f"{self.marker} is damaged: not a ParamDB marker file") from None
        return version, info.get("meta_url") or self.default_meta_url

    def read(self, supported_version: int) -> str:
        """The metadata URL of an existing store; refuses a store of another format, saying what to do."""
        version, url = self.read_marker()
        if version < supported_version:
            raise FormatError(f"store {self.root} has format {version}; run `paramdb migrate {self.root}` "
                              f"to upgrade it to format {supported_version}")
        if version > supported_version:
            raise FormatError(f"store {self.root} has format {version}, newer than this ParamDB reads "
                              f"(format {supported_version}); upgrade ParamDB")
        return url

    def set_format_version(self, version: int) -> None:
        """Rewrite the marker with a new format version, atomically and durably (migrate's last step)."""
        info = json.loads(self.marker.read_text())
        info["format_version"] = version
        tmp = self.marker.with_suffix(".migrating")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(info, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.marker)
        dir_fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def commit_marker(self) -> None:
        """The marker appears last, so a crash during create never leaves a half-made 'store'."""
        os.replace(self.marker.with_suffix(".tmp"), self.marker)
