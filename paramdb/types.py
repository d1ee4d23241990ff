"""The typed values ParamDB takes and returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Document:
    """A row: text plus user metadata. ``id`` is assigned (uuid4 hex) when not given."""

    text: str
    id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Hit:
    """One retrieved document. ``score`` is higher-is-better (cosine similarity for dense retrieval)."""

    id: str
    score: float
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Answer:
    """A generated answer, the documents it drew on, and seconds spent per stage. ``notes`` says what was
    changed to answer at all, e.g. a passage cut to fit the model's context."""

    text: str
    mode: str
    hits: list[Hit] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
