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
    # How a stored row's adapter was made: "trained" or "translated" (None on documents not yet stored).
    adapter_kind: str | None = field(default=None, compare=False)


@dataclass
class Hit:
    """One retrieved document. ``score`` is higher-is-better (cosine similarity for dense retrieval)."""

    id: str
    score: float
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class Answer:
    """A generated answer, the documents it drew on, and seconds spent per stage."""

    text: str
    mode: str
    hits: list[Hit] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
