"""``paramdb distill``: train the store's translator from its own rows (or other passages) and store it.

Everything expensive (samples, features, training) runs with no lock held and writes nothing; the result is
written at the end in one LMDB transaction under the writer lock, so a distill killed at any moment leaves
the store exactly as it was, previous translator included.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from paramdb import validate
from paramdb.content_ids import with_content_ids
from paramdb.engine.models import Models
from paramdb.engine.store import Store
from paramdb.engine import translator_blob
from paramdb.config import apply_overrides
from paramdb.errors import InvalidInput
from paramdb.knowledge.augment import build_samples
from paramdb.knowledge.distill import TEACHERS, DistillDoc, DistillSettings, provenance, train_translator
from paramdb.knowledge.translator import TranslatorSettings, translate
from paramdb.storage.codec import decode_tensors, encode_tensors

Progress = Callable[[dict], None]
SAMPLE_BATCH = 8


@dataclass
class DistillResult:
    docs: int
    held_out_docs: int
    teacher: str
    epochs: list[dict]
    base_loss: float | None          # held-out samples' loss with no adapter
    held_out_loss: float | None      # ... through the translated adapters (lower is better)
    seconds: float
    seconds_per_doc: float
    peak_rss_mb: float
    translator_bytes: int
    translator_params: int
    adapter_bytes: int               # one stored adapter, for comparison


def _source_docs(store: Store, source: Iterable[Any] | None, teacher: str, limit: int | None) -> list[dict]:
    if source is not None:
        if teacher == "adapter":
            raise InvalidInput("the adapter teacher learns from the store's trained adapters; passages from a "
                               "file have none: use --teacher context with --from")
        docs = validate.documents(with_content_ids((f"passage {i}", d) for i, d in enumerate(source, 1)))
        rows = [{"id": d.id, "text": d.text, "blob_key": None} for d in docs]
    else:
        rows = store.meta.rows_of_kind("trained", limit) if teacher == "adapter" else store.meta.list(limit)
    rows = rows[:limit] if limit else rows
    if not rows:
        what = "rows with trained adapters" if teacher == "adapter" and source is None else "documents"
        raise InvalidInput(f"store {store.path} has no {what} to learn from; insert some first, or learn from "
                           f"other passages with `paramdb distill {store.path} --from FILE.jsonl`")
    return rows


def _stored_adapter(blobs, key: str) -> Callable[[], dict]:
    def read() -> dict:
        buf = blobs.get_adapter(key)
        if buf is None:
            raise InvalidInput(f"adapter blob {key} is missing; run `paramdb check --repair`")
        return decode_tensors(buf, verify=True)
    return read


def distill(store: Store, models: Models, source: Iterable[Any] | None = None, *, teacher: str = "context", epochs: int = 4,
            lr: float = 1e-3, limit: int | None = None, held_out: float = 0.1,
            translator: dict | None = None, progress: Progress | None = None) -> DistillResult:
    validate.distill_args(teacher, TEACHERS, epochs, limit, held_out)
    try:
        settings = apply_overrides(TranslatorSettings(rank=store.config.training.rank), translator, "translator")
    except (TypeError, ValueError) as e:
        raise InvalidInput(f"bad translator settings: {e}") from None
    rows = _source_docs(store, source, teacher, limit)
    lm, blobs = models.lm, store.blobs
    docs = []
    for i in range(0, len(rows), SAMPLE_BATCH):
        chunk = rows[i:i + SAMPLE_BATCH]
        samples = build_samples(lm, [r["text"] for r in chunk], store.config.augment)
        docs += [DistillDoc(r["id"], r["text"], s, _stored_adapter(blobs, r["blob_key"]) if teacher == "adapter"
                            else None) for r, s in zip(chunk, samples)]
        if progress:
            progress({"event": "samples", "done": len(docs), "total": len(rows)})
    model, report = train_translator(lm, docs, settings, DistillSettings(teacher=teacher, epochs=epochs, lr=lr,
                                                                         held_out=held_out),
                                     store.config.training, progress)
    prov = dataclasses.replace(provenance([d.key for d in docs], teacher), held_out_loss=report.held_out_loss,
                               base_loss=report.base_loss)
    with store.lock.held("distill"):
        size = translator_blob.save(blobs, model, store.config.model_fingerprint, prov)
        store.translator = None             # this handle loads the new translator when next asked
    one = len(encode_tensors(translate(lm, model, [docs[0].text])[0]))
    return DistillResult(len(docs), report.held_out_docs, teacher, report.epochs, report.base_loss,
                         report.held_out_loss, report.seconds, report.seconds / len(docs), report.peak_rss_mb,
                         size, model.n_params(), one)
