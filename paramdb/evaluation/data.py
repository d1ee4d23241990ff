"""QA benchmark items (e.g. tools/data/eval: PopQA, HotpotQA) and the corpus a store is built from.

The corpus is the deduplicated passages of the evaluated items, each with an id derived from its text, so the
same passage has the same id in every run and for every item.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paramdb.errors import InvalidInput

@dataclass(frozen=True)
class EvalItem:
    """One question with its answer aliases and gold passages (+ optional hard-negative passages).

    ``answers`` is for scoring only: never show it to retrieval or generation.
    """

    id: str
    question: str
    answers: tuple[str, ...]
    passages: tuple[str, ...]
    distractor_passages: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


_REQUIRED = ("id", "question", "answers", "passages")


def _strings(where: str, name: str, value: Any, allow_empty: bool = False) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(x, str) and x.strip() for x in value):
        raise InvalidInput(f"{where}: field {name!r} must be a list of non-empty strings")
    if not value and not allow_empty:
        raise InvalidInput(f"{where}: field {name!r} is empty")
    return tuple(value)


def _item(where: str, line: str) -> EvalItem:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise InvalidInput(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(obj, dict):
        raise InvalidInput(f"{where}: expected a JSON object, got {type(obj).__name__}")
    missing = [f for f in _REQUIRED if f not in obj]
    if missing:
        raise InvalidInput(f"{where}: missing field{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    if not isinstance(obj["id"], str) or not obj["id"]:
        raise InvalidInput(f"{where}: field 'id' must be a non-empty string")
    if not isinstance(obj["question"], str) or not obj["question"].strip():
        raise InvalidInput(f"{where}: field 'question' must be a non-empty string")
    return EvalItem(
        id=obj["id"], question=obj["question"],
        answers=_strings(where, "answers", obj["answers"]),
        passages=_strings(where, "passages", obj["passages"]),
        distractor_passages=_strings(where, "distractor_passages", obj.get("distractor_passages", []), True),
        extra={k: v for k, v in obj.items() if k not in (*_REQUIRED, "distractor_passages")})


def load_items(path: str | Path, limit: int | None = None) -> list[EvalItem]:
    """Items of a JSONL file (blank lines skipped), the first ``limit`` only if given.

    Any malformed line raises InvalidInput naming ``file:line``; so does an id seen twice.
    """
    if limit is not None and limit < 0:
        raise InvalidInput(f"limit must be at least 0, got {limit}")
    path = Path(path)
    items: list[EvalItem] = []
    seen: dict[str, int] = {}
    try:
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if limit is not None and len(items) >= limit:
                    break
                if not line.strip():
                    continue
                item = _item(f"{path}:{lineno}", line)
                if item.id in seen:
                    raise InvalidInput(f"{path}:{lineno}: id {item.id!r} already used on line {seen[item.id]}")
                seen[item.id] = lineno
                items.append(item)
    except OSError as e:
        raise InvalidInput(f"{path}: cannot read ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{path}: not UTF-8 text") from None
    return items


def passage_id(text: str) -> str:
    """A stable id for a passage: sha1 of its stripped UTF-8 text (64 bits, ample for any corpus)."""
    return "p-" + hashlib.sha1(text.strip().encode("utf-8")).hexdigest()[:16]


def corpus(items: Iterable[EvalItem], distractors: bool) -> list[dict[str, Any]]:
    """The items' passages as ParamDB documents, deduplicated by text, in order of first appearance.

    ``metadata.source`` is "gold" if the passage is gold for any item, else "distractor" (only with
    ``distractors=True``).
    """
    docs: dict[str, dict[str, Any]] = {}
    for item in items:
        groups = [("gold", item.passages)] + ([("distractor", item.distractor_passages)] if distractors else [])
        for source, passages in groups:
            for text in passages:
                pid = passage_id(text)
                doc = docs.get(pid)
                if doc is None:
                    docs[pid] = {"id": pid, "text": text.strip(), "metadata": {"source": source}}
                elif source == "gold":
                    doc["metadata"]["source"] = "gold"
    return list(docs.values())


def gold_ids(item: EvalItem) -> set[str]:
    """Ids (as :func:`corpus` assigns them) of the item's gold passages."""
    return {passage_id(p) for p in item.passages}
