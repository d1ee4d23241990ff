"""The store's single-writer lock: an advisory ``flock`` on ``STORE/writer.lock``.

Readers never take it (SQLite WAL and LMDB MVCC give them consistent snapshots without it). Writers hold it
only while they commit (LMDB put, SQL commit, index update), not while they train, so two processes can
parameterize at once and queue only for the short write. The lock file names its holder (pid, host,
operation, since) so a writer that gives up can say who it waited for. ``flock`` dies with its process,
so a killed writer never leaves the store locked.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from paramdb.errors import ReadOnlyStore, StoreLocked

DEFAULT_TIMEOUT = 60.0


class WriterLock:
    """Re-entrant within one handle; exclusive across processes (and across handles in one process)."""

    def __init__(self, path: str | Path, timeout: float = DEFAULT_TIMEOUT, readonly: str | None = None):
        """``readonly`` (why the store is read-only, or None): every write is refused at the lock, the one
        door all writes go through, and optional work (saving derived indexes) is quietly skipped."""
        self.path = Path(path)
        self.timeout = float(timeout)
        self.readonly = readonly
        self._depth = 0
        self._fd: int | None = None
        self._thread_lock = threading.RLock()

    @contextmanager
    def held(self, operation: str) -> Iterator[None]:
        """Hold the lock for ``operation``, waiting up to ``timeout`` seconds, then StoreLocked."""
        self.refuse_if_readonly(operation)
        with self.frozen(operation):
            yield

    @contextmanager
    def frozen(self, operation: str) -> Iterator[None]:
        """Keep writers out while reading a consistent whole (backup, copy): not itself a write, so a
        read-only handle may do it too. Where the lock file cannot be opened at all (read-only media) no
        one can write the store, so there is nothing to keep out."""
        with self._thread_lock:
            if self._depth == 0:
                try:
                    self._acquire(operation, wait=True)
                except OSError as exc:
                    if self.readonly is None or exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                        raise
                    yield
                    return
            self._depth += 1
            try:
                yield
            finally:
                self._leave()

    @contextmanager
    def try_held(self, operation: str) -> Iterator[bool]:
        """Take the lock only if it is free now; yields whether it was taken (for optional work)."""
        if self.readonly:
            yield False
            return
        with self._thread_lock:
            if self._depth == 0 and not self._acquire(operation, wait=False):
                yield False
                return
            self._depth += 1
            try:
                yield True
            finally:
                self._leave()

    def refuse_if_readonly(self, operation: str) -> None:
        if self.readonly:
            raise ReadOnlyStore(f"store {self.path.parent} is read-only ({self.readonly}): {operation} refused")

    def _leave(self) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._release()

    def holder(self) -> str:
        """Who holds the lock, as recorded in the file (best effort: the holder may have just left)."""
        try:
            info = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return "an unknown process"
        if not info:
            return "an unknown process"
        since = time.strftime("%H:%M:%S", time.localtime(info.get("since", 0)))
        return f"pid {info.get('pid')} on {info.get('host')} ({info.get('operation')}, since {since})"

    def _acquire(self, operation: str, wait: bool) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait:
                    os.close(fd)
                    return False
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise StoreLocked(f"store {self.path.parent} is being written by {self.holder()}; "
                                      f"gave up after waiting {self.timeout:g} s") from None
                time.sleep(0.02)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "operation": operation, "since": time.time()}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        except OSError:
            pass        # naming the holder is a courtesy; on a full disk the lock itself still holds
        self._fd = fd
        return True

    def _release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def close(self) -> None:
        with self._thread_lock:
            self._depth = 0
            self._release()
