"""LMDB environment holding each row's adapter bytes and embedding bytes.

LMDB because adapters are read far more often than written: readers get zero-copy memoryviews straight
from the memory map and never block the single writer. One environment with two named sub-databases
(``adapters``, ``embeddings``) so a row's two blobs commit in the same transaction. The map size is grown
on demand so callers never see ``MapFullError``.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import lmdb

from paramdb.errors import CorruptData, DiskFull, InvalidInput, ReadOnlyStore, StoreNotFound

KINDS = ("adapters", "embeddings")
# Store-wide models beside the rows' blobs (the document-to-adapter translator): a sub-database of its own, so
# row-keyed scans (orphans, migrate, copy counts) never see it, while backup, restore and copy, which move
# the whole environment, carry it with no code of their own.
MODELS = "models"
_T = TypeVar("_T")
# LMDB's answers to damaged pages or files; after one, the rest of that transaction fails with MDB_BAD_TXN
_DAMAGE = (lmdb.CorruptedError, lmdb.PageNotFoundError, lmdb.BadTxnError, lmdb.PanicError, lmdb.InvalidError,
           lmdb.BadRslotError, lmdb.VersionMismatchError)
_FULL = ("no space left", "input/output error", "disk quota")


def _private(folder: Path) -> None:
    """LMDB's copy creates its file 0644 (less the umask): store files are the owner's alone, 0600."""
    for f in folder.iterdir():
        if f.is_file():
            os.chmod(f, 0o600)


def _damaged(path: Path, exc: lmdb.Error) -> CorruptData:
    return CorruptData(f"LMDB environment {path} is damaged ({exc}); restore the store from a backup "
                       "(`paramdb restore ARCHIVE STORE`)")


def _disk_full(path: Path, exc: lmdb.Error) -> DiskFull:
    return DiskFull(f"the disk under {path} is full ({exc}): the write was rolled back and nothing of it was "
                    "stored (free some space and retry)")


class BlobReader:
    """Lookups bound to one read transaction.

    The memoryviews point into LMDB's memory map: they are zero-copy and valid only inside the ``with
    store.reader()`` block that produced this reader. Copy (``bytes(view)``) anything kept longer.
    """

    def __init__(self, txn: lmdb.Transaction, dbs: dict[str, lmdb._Database | None]):
        self._txn, self._dbs = txn, dbs

    def _get(self, kind: str, key: str) -> memoryview | None:
        db = self._dbs[kind]
        return None if db is None else self._txn.get(key.encode("utf-8"), db=db)

    def adapter(self, key: str) -> memoryview | None:
        return self._get("adapters", key)

    def embedding(self, key: str) -> memoryview | None:
        return self._get("embeddings", key)


class BlobSnapshot(BlobReader):
    """A reader that can also copy the whole environment exactly as its transaction sees it."""

    def __init__(self, env: lmdb.Environment, txn: lmdb.Transaction, dbs: dict[str, lmdb._Database | None]):
        super().__init__(txn, dbs)
        self._env = env

    def copy_to(self, path: str | Path, compact: bool = True) -> None:
        """Copy into an empty folder (created 0700); ``compact`` leaves free pages behind."""
        target = Path(path)
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._env.copy(str(target), compact=compact, txn=self._txn)
        _private(target)


class _Shared:
    """One LMDB environment per path per process (LMDB refuses a second open), shared by every handle."""

    def __init__(self, path: Path, readonly: bool, map_size: int):
        data_file = path / "data.mdb"
        if data_file.exists():  # never open with a map smaller than what is already on disk
            map_size = max(map_size, data_file.stat().st_size)
        # a reader that may not write the lock file (read-only media, another user's store) reads without it
        lock = not readonly or os.access(path / "lock.mdb" if (path / "lock.mdb").exists() else path, os.W_OK)
        try:
            self.env = lmdb.open(str(path), map_size=map_size, subdir=True, readonly=readonly,
                                 max_dbs=4, lock=lock, mode=0o600)
        except _DAMAGE as exc:
            raise _damaged(path, exc) from None
        self.readonly = readonly
        self.write_lock = threading.Lock()
        self.cond = threading.Condition()
        self.readers = 0
        self.growing = False
        self.local = threading.local()
        self.refs = 0
        try:
            self.dbs: dict[str, lmdb._Database | None] = {k: self._open_db(k) for k in (*KINDS, MODELS)}
        except _DAMAGE as exc:
            self.env.close()
            raise _damaged(path, exc) from None

    def _open_db(self, name: str) -> lmdb._Database | None:
        """A read-only env cannot create sub-databases; a missing one then simply reads as empty."""
        try:
            return self.env.open_db(name.encode(), create=not self.readonly)
        except lmdb.NotFoundError:
            return None


_SHARED: dict[str, _Shared] = {}
_SHARED_LOCK = threading.Lock()


def _acquire(path: Path, readonly: bool, map_size: int) -> _Shared:
    key = os.path.realpath(path)
    with _SHARED_LOCK:
        shared = _SHARED.get(key)
        if shared is None:
            shared = _SHARED[key] = _Shared(path, readonly, map_size)
        elif shared.readonly and not readonly:
            raise InvalidInput(f"{path} is already open read-only in this process; close it to write")
        shared.refs += 1
        return shared


def _release(shared: _Shared) -> None:
    with _SHARED_LOCK:
        shared.refs -= 1
        if shared.refs == 0:
            _SHARED.pop(os.path.realpath(shared.env.path()), None)
            shared.env.close()


class BlobStore:
    """Adapters and embeddings keyed by a row's ``blob_key``, in one LMDB environment directory.

    Thread-safe: writes are serialized; growing the map waits until no other thread holds a read
    transaction (remapping under a live reader would leave its memoryviews dangling). So do not write
    from a thread that is itself inside ``reader()`` or iterating ``iter_embeddings()``.
    """

    def __init__(self, path: str | Path, readonly: bool = False, map_size: int = 64 << 20):
        self.path = Path(path)
        self.readonly = readonly
        if readonly and not (self.path / "data.mdb").exists():
            raise StoreNotFound(f"no LMDB environment at {self.path}")
        if not readonly:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._s = _acquire(self.path, readonly, map_size)

    # -- transactions ---------------------------------------------------------------------------------
    @contextmanager
    def _read(self, buffers: bool = False) -> Iterator[lmdb.Transaction]:
        with self._s.cond:
            while self._s.growing:
                self._s.cond.wait()
            self._s.readers += 1
        self._s.local.depth = getattr(self._s.local, "depth", 0) + 1
        try:
            try:
                txn = self._s.env.begin(buffers=buffers)
            except lmdb.MapResizedError:  # another process grew the map: adopt its size
                self._s.env.set_mapsize(0)
                txn = self._s.env.begin(buffers=buffers)
            with txn:
                yield txn
        except _DAMAGE as exc:
            raise _damaged(self.path, exc) from None
        finally:
            self._s.local.depth -= 1
            with self._s.cond:
                self._s.readers -= 1
                self._s.cond.notify_all()

    def _grow(self, new_size: int) -> None:
        if getattr(self._s.local, "depth", 0):
            raise RuntimeError("cannot grow the LMDB map while this thread holds a read transaction")
        with self._s.cond:
            self._s.growing = True
            try:
                while self._s.readers:
                    self._s.cond.wait()
                self._s.env.set_mapsize(new_size)
            finally:
                self._s.growing = False
                self._s.cond.notify_all()

    def _write(self, fn: Callable[[lmdb.Transaction], _T]) -> _T:
        """Run ``fn`` in one write transaction; on a full map, abort, double the map and rerun it all."""
        if self.readonly:
            raise ReadOnlyStore(f"blob store {self.path} is open read-only: nothing was written")
        with self._s.write_lock:
            while True:
                try:
                    with self._s.env.begin(write=True) as txn:
                        return fn(txn)
                except lmdb.MapFullError as exc:
                    try:
                        self._grow(self._s.env.info()["map_size"] * 2)
                    except lmdb.Error:
                        raise _disk_full(self.path, exc) from None
                except lmdb.MapResizedError:
                    self._grow(0)
                except _DAMAGE as exc:
                    raise _damaged(self.path, exc) from None
                except lmdb.Error as exc:
                    if isinstance(exc, lmdb.DiskError) or any(s in str(exc).lower() for s in _FULL):
                        raise _disk_full(self.path, exc) from None
                    raise

    # -- writes ---------------------------------------------------------------------------------------
    def put(self, adapters: dict[str, bytes], embeddings: dict[str, bytes]) -> None:
        """Write a batch atomically and durably: after return it is on disk, after a failure none is."""
        def do(txn: lmdb.Transaction) -> None:
            for kind, items in (("adapters", adapters), ("embeddings", embeddings)):
                for key, value in items.items():
                    txn.put(key.encode("utf-8"), value, db=self._s.dbs[kind])
        self._write(do)

    def put_model(self, name: str, value: bytes) -> None:
        """Write one store-wide model (e.g. the translator) in one transaction: all of it or none."""
        self._write(lambda txn: txn.put(name.encode("utf-8"), value, db=self._s.dbs[MODELS]))

    def get_model(self, name: str) -> bytes | None:
        return self._get(MODELS, name)

    def delete(self, keys: Iterable[str]) -> None:
        """Remove keys from both sub-databases in one transaction; missing keys are not an error."""
        encoded = [k.encode("utf-8") for k in keys]

        def do(txn: lmdb.Transaction) -> None:
            for kind in KINDS:
                for key in encoded:
                    txn.delete(key, db=self._s.dbs[kind])
        self._write(do)

    # -- reads ----------------------------------------------------------------------------------------
    @contextmanager
    def reader(self) -> Iterator[BlobReader]:
        """One consistent snapshot; its memoryviews are valid only inside this ``with`` block."""
        with self._read(buffers=True) as txn:
            yield BlobReader(txn, self._s.dbs)

    def _get(self, kind: str, key: str) -> bytes | None:
        db = self._s.dbs[kind]
        if db is None:
            return None
        with self._read() as txn:
            return txn.get(key.encode("utf-8"), db=db)

    def get_adapter(self, key: str) -> bytes | None:
        return self._get("adapters", key)

    def get_embedding(self, key: str) -> bytes | None:
        return self._get("embeddings", key)

    def _db(self, kind: str) -> lmdb._Database | None:
        if kind not in KINDS:
            raise InvalidInput(f"unknown blob kind {kind!r}; valid: {', '.join(KINDS)}")
        return self._s.dbs[kind]

    def keys(self, kind: str = "adapters") -> list[str]:
        db = self._db(kind)
        if db is None:
            return []
        with self._read() as txn, txn.cursor(db=db) as cur:
            return [bytes(k).decode("utf-8") for k in cur.iternext(keys=True, values=False)]

    def count(self, kind: str = "adapters") -> int:
        db = self._db(kind)
        if db is None:
            return 0
        with self._read() as txn:
            return int(txn.stat(db)["entries"])

    def value_bytes(self, kind: str = "adapters") -> int:
        """Total length of the values of ``kind``: what they take, without LMDB's pages and free space.
        Reads only the nodes' sizes from one snapshot, not the values themselves."""
        db = self._db(kind)
        if db is None:
            return 0
        with self._read(buffers=True) as txn, txn.cursor(db=db) as cur:
            return sum(len(v) for v in cur.iternext(keys=False, values=True))

    def iter_embeddings(self) -> Iterator[tuple[str, bytes]]:
        """All (key, embedding bytes) from one snapshot, for rebuilding the vector index."""
        db = self._s.dbs["embeddings"]
        if db is None:
            return
        with self._read() as txn, txn.cursor(db=db) as cur:
            for key, value in cur:
                yield key.decode("utf-8"), value

    # -- maintenance ----------------------------------------------------------------------------------
    def size_bytes(self) -> int:
        """Apparent size of the environment's files (LMDB files are sparse; this is the upper bound)."""
        return sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())

    @contextmanager
    def snapshot(self) -> Iterator["BlobSnapshot"]:
        """A read transaction kept open for a long job (a backup): what it sees never changes."""
        with self._read(buffers=True) as txn:
            yield BlobSnapshot(self._s.env, txn, self._s.dbs)

    def copy_to(self, path: str | Path, compact: bool = True) -> None:
        """A consistent hot copy into an empty directory; ``compact`` drops free pages."""
        target = Path(path)
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._s.env.copy(str(target), compact=compact)
        _private(target)

    def close(self) -> None:
        """Release this handle; the environment closes with the last handle on it in this process."""
        if self._s is not None:
            _release(self._s)
            self._s = None

    def __enter__(self) -> BlobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
