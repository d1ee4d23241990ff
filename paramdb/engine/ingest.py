"""The one insert pipeline: read, validate, id, dedup, batch, parameterize, commit.

Every way in (``db.insert``, the CLI, the server, Ray) runs these steps in this order. Only *parameterize*
has more than one implementation, an :class:`Executor`: this process (:class:`LocalExecutor`: train,
translate, or embed only for pending rows) or Ray workers (paramdb/distributed). Whichever runs it, this
module alone cuts batches, skips what is stored, commits and reports, so a rerun resumes the same way on
every path.

A list is validated whole before anything is parameterized (one bad item adds nothing); any other iterable
is streamed ``batch_size`` documents at a time, so memory stays bounded whatever the corpus.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import Any, NamedTuple, Protocol

from .. import config, validate
from ..content_ids import with_content_ids
from ..errors import DuplicateId, InsertInterrupted
from ..storage.meta import PENDING
from ..types import Document, InsertReport
from .commit import commit_batch
from .models import Models
from .parameterize import embedded, parameterize, translated
from .store import Store

Progress = Callable[[int, int], None]   # (documents handled: stored, skipped or failed; total or -1)

PARAMETERIZE = config.PARAMETERIZE    # "train", "translate" or "later" (LocalExecutor's ``how``)


class Made(NamedTuple):
    """One parameterized batch, ready to commit, or the documents of a batch that could not be made."""
    batch: list[Document]
    vectors: Any = None
    adapters: list | None = None
    kind: str = "trained"
    failed: tuple[tuple[str, str], ...] = ()      # (id, one-line reason): reported, not stored


class Executor(Protocol):
    """Where parameterize runs. ``made`` yields one :class:`Made` per batch (in any order); ``stats`` takes
    the executor's own figures for ``InsertReport.stats``."""

    def made(self, batches: Iterator[list[Document]], stats: dict[str, Any]) -> Iterator[Made]: ...


class LocalExecutor:
    """Parameterize in this process, one batch at a time."""

    EMBED_AHEAD = 64   # documents a deferred insert embeds in one call: fewer, fuller embedder batches

    def __init__(self, models: Models, how: str = "train", translator=None):
        self.models, self.how, self.translator = models, how, translator

    def made(self, batches: Iterator[list[Document]], stats: dict[str, Any]) -> Iterator[Made]:
        if self.how == "later":
            yield from self._embedded_ahead(batches)
            return
        for batch in batches:
            if self.how == "translate":
                yield Made(batch, *translated(self.models, self.translator, batch), "translated")
            else:
                yield Made(batch, *parameterize(self.models, batch), "trained")

    def _embedded_ahead(self, batches: Iterator[list[Document]]) -> Iterator[Made]:
        """A deferred insert's whole cost is the embedder: consecutive batches are embedded together, up to
        EMBED_AHEAD documents per call (the embedder sorts a call's texts by length, so a larger call pads
        less), and still committed one batch at a time."""
        while group := list(islice(batches, 1)):
            while sum(map(len, group)) < self.EMBED_AHEAD and (more := list(islice(batches, 1))):
                group += more
            vectors = embedded(self.models, [d for b in group for d in b])
            start = 0
            for b in group:
                yield Made(b, vectors[start:start + len(b)], None, PENDING)
                start += len(b)


def insert(store: Store, docs: Iterable[Any], executor: Executor, *, upsert: bool, batch_size: int,
           progress: Progress | None = None) -> InsertReport:
    """``docs``: one document (str, dict, Document) or an iterable of them. Ctrl-C raises InsertInterrupted
    naming the ids committed so far (whole batches). An id-less document gets the id of its text
    (content_ids.with_content_ids), on every path."""
    report = InsertReport()
    batches, total = planned(store, docs, batch_size, upsert, report.skipped)

    def tell() -> None:
        if progress:
            progress(len(report.ids) + len(report.skipped) + len(report.failed), total)

    made = executor.made(batches, report.stats)
    try:
        tell()
        for m in made:
            if m.batch:
                commit_batch(store, m.batch, m.vectors, m.adapters, upsert, kind=m.kind)
                report.ids += [d.id for d in m.batch]
            report.failed += list(m.failed)
            tell()
    except KeyboardInterrupt:
        raise InsertInterrupted(list(report.ids)) from None
    finally:
        getattr(made, "close", lambda: None)()    # an executor's workers stop here, whatever ended the loop
        store.indexes.save()
    return report


def planned(store: Store, docs: Iterable[Any], batch_size: int, upsert: bool,
            skipped: list[str]) -> tuple[Iterator[list[Document]], int]:
    """(batches still to store, number of documents or -1 when streamed). A list is checked whole here."""
    if isinstance(docs, (str, dict, Document)):
        docs = [docs]
    numbered = with_content_ids((f"document {i}", d) for i, d in enumerate(docs, 1))
    if isinstance(docs, Sequence):
        located = list(numbered)
        checked = validated(store, located, upsert, skipped)
        return (checked[i:i + batch_size] for i in range(0, len(checked), batch_size)), len(located)
    return _streamed(store, numbered, batch_size, upsert, skipped), -1


def validated(store: Store, located: Iterable[tuple[str, Any]], upsert: bool,
              skipped: list[str]) -> list[Document]:
    """Coerce (where, item) pairs to Documents (InvalidInput names the item) and keep those still to store
    (:func:`unstored`). An upsert keeps them all: it replaces what is stored even when identical, which is
    how ``check --repair`` rebuilds a damaged adapter and how an upsert trains a pending row."""
    batch = validate.documents(located)
    return batch if upsert else unstored(store, batch, skipped)


def unstored(store: Store, batch: list[Document], skipped: list[str]) -> list[Document]:
    """The documents of ``batch`` still to parameterize. An interrupted insert leaves whole batches stored and
    the rest not, so a rerun of the same input skips a document stored with the same id, text and metadata
    (its id goes to ``skipped``) instead of training it again; a taken id with other content is still a
    DuplicateId, so a real conflict is never hidden."""
    stored = {r["id"]: r for r in store.meta.get([d.id for d in batch])}
    out = []
    for d in batch:
        row = stored.get(d.id)
        if row is None:
            out.append(d)
        elif row["text"] == d.text and row["metadata"] == d.metadata:
            skipped.append(d.id)
        else:
            raise DuplicateId(d.id)
    return out


def _streamed(store: Store, located: Iterator[tuple[str, Any]], batch_size: int, upsert: bool,
              skipped: list[str]) -> Iterator[list[Document]]:
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
