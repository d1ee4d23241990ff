"""The id of a document given without one: derived from its text, so the same input gets the same ids on every
run and every path (Python, the CLI, Ray), which is what lets a rerun of an interrupted insert skip what it
already stored."""
from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from typing import Any, Iterable, Iterator

from .types import Document


def content_id(text: str) -> str:
    """The id of an id-less document: the first 32 hex digits of its text's sha256. Every insert path (local,
    streamed, Ray, the CLI) uses it through :func:`with_content_ids`, so the same text gets the same id
    wherever and however often it is inserted, and a second insert reports it in ``skipped``. Metadata is
    not part of it: the ids of stores written since the CLI first derived ids (from the text alone) stay
    what a rerun computes, so the same text with other metadata is refused as a taken id (DuplicateId)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def with_content_ids(located: Iterable[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
    """Give each id-less item an id derived from its text (plus how often that text came before), so the same
    input gets the same ids on every run: what lets a rerun of an interrupted insert skip what it stored.
    Items with an id, and items that are not documents at all (coerce names those), pass through unchanged."""
    seen: Counter[str] = Counter()
    for where, item in located:
        if isinstance(item, str):
            item = {"text": item}
        text, doc_id = (item.get("text"), item.get("id")) if isinstance(item, dict) else \
            (item.text, item.id) if isinstance(item, Document) else (None, None)
        if isinstance(text, str) and doc_id is None:
            digest = content_id(text)
            seen[digest] += 1
            doc_id = digest if seen[digest] == 1 else f"{digest}-{seen[digest]}"
            item = {**item, "id": doc_id} if isinstance(item, dict) else dataclasses.replace(item, id=doc_id)
        yield where, item
