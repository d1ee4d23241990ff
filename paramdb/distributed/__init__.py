"""Parameterizing on more than one machine. Importing this package never imports Ray: only
``ParamDB.insert(..., executor="ray")`` loads :mod:`paramdb.distributed.ray_executor`, which does."""
from __future__ import annotations

from typing import Any, Iterable


class InsertReport(list):
    """What a distributed insert did. It is the list of ids stored (as a local insert returns), so callers
    that only want ids need not care which executor ran; the rest says what was not stored and why.

    ``skipped``: ids already in the store with the same text and metadata (a rerun after an interrupted run).
    ``failed``: ``(id, error)`` of documents that failed alone after their batch failed; they are not stored
    and a rerun tries them again. ``stats``: workers, batches, documents retried, seconds, docs/s.
    """

    def __init__(self, ids: Iterable[str] = (), skipped: Iterable[str] = (),
                 failed: Iterable[tuple[str, str]] = (), stats: dict[str, Any] | None = None):
        super().__init__(ids)
        self.skipped: list[str] = list(skipped)
        self.failed: list[tuple[str, str]] = list(failed)
        self.stats: dict[str, Any] = dict(stats or {})

    def __repr__(self) -> str:
        return (f"InsertReport(stored={len(self)}, skipped={len(self.skipped)}, failed={len(self.failed)}, "
                f"stats={self.stats})")


__all__ = ["InsertReport"]
