"""The typed values ParamDB takes and returns."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Document:
    """A row: text plus user metadata. ``id``, when not given, is derived from the text at insert
    (paramdb/content_ids.py), so inserting the same text again finds it stored instead of adding a copy."""

    text: str
    id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # How a stored row's adapter was made: "trained", "translated" or "imported"; "pending" when it has none yet
    # (inserted with parameterize="later": `refine` trains it). None on documents not yet stored.
    adapter_kind: str | None = field(default=None, compare=False)


@dataclass
class Hit:
    """One retrieved document. ``score`` is higher-is-better (cosine similarity for dense retrieval)."""

    id: str
    score: float
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    # How its adapter was made ("trained", "translated", "imported"): a translated one answers less exactly;
    # "pending": none yet, so prag and combine answer from its passage in the prompt (Answer.notes says so).
    adapter_kind: str | None = field(default=None, compare=False)


@dataclass
class Answer:
    """A generated answer, the documents it drew on, and seconds spent per stage. ``notes`` says what was
    changed to answer at all, e.g. a passage cut to fit the model's context. ``generation`` is the model's
    whole answer. ``text`` is always a span of it, character for character, or all of it: the span the base
    model scores best as the answer to the question (knowledge/shorten.py), or the whole generation when no
    span is trusted (none beats the spans it does not overlap by the confidence margin), when the generation
    is empty, or when asked with ``short=False``."""

    text: str
    mode: str
    hits: list[Hit] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    generation: str = ""


@dataclass(eq=False)
class InsertReport(Sequence):
    """What an insert did, whichever executor ran it. It reads as the sequence of ids stored (in commit
    order) and compares equal to that list, so ``ids = db.insert(...)`` needs nothing more.

    ``skipped``: ids already stored with the same text and metadata (a rerun after an interrupted run).
    ``failed``: ``(id, error)`` of documents that failed alone after their batch failed (Ray); not stored,
    and a rerun tries them again. ``stats``: executor figures (Ray: workers, batches, retries, seconds, docs/s).
    """

    ids: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i):
        return self.ids[i]

    def __eq__(self, other) -> bool:
        if isinstance(other, InsertReport):
            return (self.ids, self.skipped, self.failed, self.stats) == \
                (other.ids, other.skipped, other.failed, other.stats)
        if isinstance(other, (list, tuple)):
            return self.ids == list(other)
        return NotImplemented

    def to_json(self) -> dict[str, Any]:
        return {"ids": list(self.ids), "skipped": list(self.skipped), "failed": [list(f) for f in self.failed],
                "stats": dict(self.stats)}
