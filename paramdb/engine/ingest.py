"""Insert on this process: validate, cut into batches, parameterize, commit, batch by batch.

A list is validated whole before anything is trained (one bad item adds nothing); any other iterable is
streamed ``batch_size`` documents at a time, so memory stays bounded whatever the corpus. The Ray executor
(paramdb/distributed) replaces the parameterize step with workers and reuses :func:`commit_batch`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

from .. import documents
from ..errors import DuplicateId, InsertInterrupted
from ..resume import unstored
from ..storage.meta import PENDING
from ..types import Document, InsertReport
from .commit import commit_batch
from .models import Models
from .parameterize import embedded, parameterize, translated
from .store import Store

Progress = Callable[[int, int], None]   # (documents done, documents total or -1)


# How insert makes a row's adapter (db.insert's ``parameterize``): trained per document, translated by the
# store's translator in one forward pass, or "later": no adapter at all yet, only the embedding (a "pending"
# row, answered from its passage until ``refine`` trains it).
PARAMETERIZE = ("train", "translate", "later")


def insert(store: Store, models: Models, docs: Iterable[Any], *, upsert: bool, batch_size: int,
           progress: Progress | None = None, translator=None, parameterize_as: str = "train") -> InsertReport:
    """Ctrl-C raises InsertInterrupted naming the ids committed so far (whole batches). With ``translator``,
    adapters are translated (one forward pass) instead of trained; with ``parameterize_as="later"`` none is
    made: each row is committed with its embedding alone, as a pending row. An id-less document gets the id of
    its text (documents.with_content_ids), as on Ray and in the CLI."""
    report = InsertReport()
    located = documents.with_content_ids((f"document {i}", d) for i, d in enumerate(docs, 1)) \
        if isinstance(docs, Sequence) else None
    if located is not None:
        checked = validated(store, located, upsert, report.skipped)
        batches: Iterable[list[Document]] = (checked[i:i + batch_size] for i in range(0, len(checked), batch_size))
        total = len(checked)
    else:
        batches = _streamed(store, docs, batch_size, upsert, report.skipped)
        total = -1
    if progress:
        progress(0, total)
    later = parameterize_as == "later"
    steps = _embedded_ahead(models, batches) if later else ((b, None) for b in batches)
    try:
        for batch, vectors in steps:
            if later:
                adapters, kind = None, PENDING
            elif translator is None:
                (vectors, adapters), kind = parameterize(models, batch), "trained"
            else:
                (vectors, adapters), kind = translated(models, translator, batch), "translated"
            commit_batch(store, batch, vectors, adapters, upsert, kind=kind)
            report.ids += [d.id for d in batch]
            if progress:
                progress(len(report.ids), total)
    except KeyboardInterrupt:
        raise InsertInterrupted(list(report.ids)) from None
    finally:
        store.indexes.save()
    return report


EMBED_AHEAD = 64   # documents a deferred insert embeds in one call: fewer, fuller embedder batches


def _embedded_ahead(models: Models, batches: Iterable[list[Document]]) -> Iterator[tuple[list[Document], Any]]:
    """(batch, its embeddings) for a deferred insert, whose whole cost is the embedder: consecutive batches are
    embedded together, up to EMBED_AHEAD documents per call (the embedder sorts a call's texts by length, so
    a larger call pads less), and still committed one batch at a time."""
    batches = iter(batches)
    while group := list(islice(batches, 1)):
        while sum(map(len, group)) < EMBED_AHEAD and (more := list(islice(batches, 1))):
            group += more
        vectors = embedded(models, [d for b in group for d in b])
        start = 0
        for b in group:
            yield b, vectors[start:start + len(b)]
            start += len(b)


def validated(store: Store, located: Iterable[tuple[str, Any]], upsert: bool,
              skipped: list[str]) -> list[Document]:
    """Coerce (where, item) pairs to Documents (InvalidInput names the item) and keep those still to store: one
    stored with the same text and metadata goes to ``skipped``, another taken id is a DuplicateId
    (paramdb.resume). An upsert keeps them all: it replaces what is stored even when identical, which is
    how ``check --repair`` rebuilds a damaged adapter from its row's text."""
    batch = documents.coerce_all(located)
    return batch if upsert else unstored(store.meta, batch, False, skipped)


def _streamed(store: Store, docs: Iterable[Any], batch_size: int, upsert: bool,
              skipped: list[str]) -> Iterator[list[Document]]:
    located = documents.with_content_ids((f"document {i}", d) for i, d in enumerate(docs, 1))
    seen: set[str] = set()   # ids of earlier batches: a repeat across batches is still a duplicate
    while chunk := list(islice(located, batch_size)):
        batch = validated(store, chunk, upsert, skipped)
        if not upsert:
            repeat = next((d.id for d in batch if d.id in seen), None)
            if repeat is not None:
                raise DuplicateId(repeat)
            seen.update(d.id for d in batch)
        if batch:
            yield batch
