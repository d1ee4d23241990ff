"""Checking what users hand to insert, before any expensive work and before anything is written."""
from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from typing import Any, Iterable, Iterator

from . import validate
from .errors import InvalidInput
from .types import Document


def coerce(item: Any, where: str) -> Document:
    """A str, dict or Document as a validated Document; ``where`` names it in errors (e.g. 'docs.jsonl:3')."""
    if isinstance(item, str):
        item = Document(text=item)
    elif isinstance(item, dict):
        unknown = sorted(set(item) - {"id", "text", "metadata"})
        if unknown:
            raise InvalidInput(f"{where}: unknown field {unknown[0]!r} (fields: id, text, metadata)")
        if "text" not in item:
            raise InvalidInput(f"{where}: document has no 'text'")
        meta = item.get("metadata")
        item = Document(text=item["text"], id=item.get("id"), metadata={} if meta is None else meta)
    elif not isinstance(item, Document):
        raise InvalidInput(f"{where}: expected a str, dict or Document, got {type(item).__name__}")
    if not isinstance(item.text, str):
        raise InvalidInput(f"{where}: text must be a string, got {type(item.text).__name__}")
    if not item.text.strip():
        raise InvalidInput(f"{where}: text is empty")
    validate.unicode_text(item.text, f"{where}: text")
    doc_id = validate.doc_id(item.id if item.id is not None else content_id(item.text), f"{where}: id")
    return Document(text=item.text, id=doc_id, metadata=dict(validate.metadata(item.metadata, where)))


def coerce_all(located: Iterable[tuple[str, Any]]) -> list[Document]:
    """Validate a batch of (where, item) pairs; an id repeated inside the batch names both places."""
    docs, seen = [], {}
    for where, item in located:
        doc = coerce(item, where)
        if doc.id in seen:
            raise InvalidInput(f"{where}: duplicate id {doc.id!r} (also at {seen[doc.id]})")
        seen[doc.id] = where
        docs.append(doc)
    return docs


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
