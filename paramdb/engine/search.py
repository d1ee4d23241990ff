"""Retrieval over a store's derived indexes (dense, BM25 or both fused), resolved to rows.

A new retrieval method is added in paramdb/retrieval.py (fusion) and the indexes (engine/indexes.py); this
module only turns index labels back into rows.
"""
from __future__ import annotations

from ..types import Hit
from .models import Models
from .store import Store


def search(store: Store, models: Models, text: str, k: int, where: dict | None,
           method: str) -> list[tuple[Hit, str]]:
    """Hits best first, each with its row's blob key, so answering reads adapters without a second SQL
    lookup. The embedder is loaded only when dense retrieval needs it. Arguments were checked by the caller."""
    allowed = set(store.meta.rowids_matching(where)) if where else None
    if allowed is not None and not allowed:
        return []
    found = store.indexes.search(method, text, lambda: models.embedder.embed([text])[0], k, allowed)
    rows = {r["rowid"]: r for r in store.meta.get_by_rowids([label for label, _ in found])}
    return [(Hit(id=rows[label]["id"], score=float(score), text=rows[label]["text"],
                 metadata=rows[label]["metadata"], adapter_kind=rows[label]["adapter_kind"]),
             rows[label]["blob_key"])
            for label, score in found if label in rows]
