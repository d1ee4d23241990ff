"""Stored adapters as side-path factors on the compute device: read, cached per store handle, merged.

Reads go LMDB -> one copy-and-convert per adapter (knowledge/inject.from_stored) -> the store's cache;
merging k adapters for a question is one gather (knowledge/inject.merge_flat). An export or import of
adapters in another format reads and writes the stored bytes through ``store.blobs`` and the codec.
"""
from __future__ import annotations

from typing import Any

from ..config import DEFAULT_MERGE, rank_weights
from ..errors import CorruptData, InvalidInput, UnknownId
from ..knowledge.inject import from_stored, merge_flat, question_scale
from ..knowledge.lora import side_path
from ..knowledge.models import LoadedModel
from ..storage.meta import PENDING
from .store import Store


class NoAdapterYet(InvalidInput):
    """The row is pending (inserted with ``parameterize="later"``): it has no adapter to read or export yet."""

    def __init__(self, doc_id: str, path):
        super().__init__(f"document {doc_id!r} has no adapter yet (inserted with --defer, pending): run "
                         f"`paramdb refine {path}` to train it")
        self.doc_id = doc_id


def factors_for_ids(store: Store, lm: LoadedModel, doc_ids: list[str]) -> list:
    """Each document's adapter as side-path factors (UnknownId for an id not stored, NoAdapterYet for a
    pending row, which has none until ``refine`` trains it)."""
    rows = {r["id"]: r for r in store.meta.get(doc_ids)}
    missing = [i for i in doc_ids if i not in rows]
    if missing:
        raise UnknownId(missing[0])
    pending = [i for i in doc_ids if rows[i]["adapter_kind"] == PENDING]
    if pending:
        raise NoAdapterYet(pending[0], store.path)
    return load(store, lm, [rows[i]["blob_key"] for i in doc_ids])


def load(store: Store, lm: LoadedModel, keys: list[str]) -> list:
    """The adapters under ``keys`` as factors, from the cache or from LMDB in one read transaction."""
    names = [n for n, _ in side_path(lm.model).modules]
    dtype = next(lm.model.parameters()).dtype
    out: dict[str, Any] = {}
    todo = []
    for k in keys:
        cached = store.cache.get(k)
        if cached is None:
            todo.append(k)
        else:
            out[k] = cached
    if todo:
        with store.blobs.reader() as r:
            for k in todo:
                try:
                    buf = r.adapter(k)
                    if buf is None:
                        raise CorruptData(f"adapter blob {k} is missing")
                    out[k] = from_stored(buf, names, lm.device, dtype)
                except CorruptData as exc:       # name the row: the blob key means nothing to a user
                    raise CorruptData(f"document {store.meta.id_of_blob(k)!r}: {exc}; run `paramdb check "
                                      f"--repair {store.path}`") from None
                store.cache.put(k, out[k])
    return [out[k] for k in keys]


def merged(store: Store, lm: LoadedModel, blob_keys: list[list[str]], merge: str = DEFAULT_MERGE,
           weight: float = 1.0):
    """One merged side path per question from its retrieved adapters (None when no question has any):
    each adapter weighs 1/k ("mean"), 1 ("sum") or 1/rank normalised ("rank": the best hit outweighs the
    rest), times ``weight`` and the store's LoRA scale."""
    if not any(blob_keys):
        return None
    per_q = [load(store, lm, keys) if keys else [] for keys in blob_keys]
    scales = [question_scale(store.config.training.scale, merge, weight, len(keys)) for keys in blob_keys]
    weights = [rank_weights(len(keys)) for keys in blob_keys] if merge == "rank" else None
    return merge_flat(per_q, lm.device, next(lm.model.parameters()).dtype, scale=scales, weights=weights)
