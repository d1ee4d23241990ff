"""Reading insert and question files. Every problem is an InvalidInput naming ``file`` or ``file:line``.

``.jsonl``: one JSON object per line (blank lines skipped). ``-``: JSONL from stdin. Any other file: its
whole text is one document whose id is the file stem.
"""
from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

from paramdb.content_ids import with_content_ids
from paramdb.validate import documents
from paramdb.errors import InvalidInput
from paramdb.types import Document

STDIN = "-"
STDIN_NAME = "<stdin>"


def _lines(path: str) -> Iterator[tuple[str, int, str]]:
    """(name, line number, line) for a file or stdin, with read and decode errors named."""
    name = STDIN_NAME if path == STDIN else path
    try:
        f = sys.stdin.buffer if path == STDIN else open(path, "rb")
        with contextlib.nullcontext(f) if path == STDIN else f:
            for lineno, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
                except UnicodeDecodeError:
                    raise InvalidInput(f"{name}:{lineno}: not UTF-8 text") from None
                yield name, lineno, line
    except OSError as exc:
        raise InvalidInput(f"{name}: cannot read: {exc.strerror or exc}") from None


def read_text(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read: {exc.strerror or exc}") from None


def jsonl_objects(path: str) -> Iterator[tuple[str, dict]]:
    """(location, object) for each non-blank line of a JSONL file."""
    for name, lineno, line in _lines(path):
        if not line.strip():
            continue
        where = f"{name}:{lineno}"
        yield where, json_object(line, where)


def json_object(text: str, where: str, error: type[InvalidInput] = InvalidInput) -> dict:
    """``text`` parsed as one JSON object, or ``error`` naming ``where``: a JSONL line, --where-json or
    --metadata. Deep nesting is refused here, where Python's parser would otherwise overflow its stack."""
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise error(f"{where}: invalid JSON: {getattr(exc, 'msg', exc)}") from None
    except RecursionError:
        raise error(f"{where}: JSON nested too deeply") from None
    if not isinstance(obj, dict):
        raise error(f"{where}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _located_items(path: str) -> Iterator[tuple[str, Any]]:
    if path == STDIN or path.lower().endswith(".jsonl"):
        yield from jsonl_objects(path)
    else:
        yield path, {"id": Path(path).stem, "text": read_text(path)}


def read_documents(paths: Sequence[str]) -> list[Document]:
    """All documents of all files, validated together (ids unique across files) before anything is stored.
    An id-less document gets the id of its text (content_ids.with_content_ids), as every insert path gives it,
    so the same input gets the same ids on every run (for resumable runs)."""
    located = (item for path in paths for item in _located_items(path))
    return documents(with_content_ids(located))


def read_questions(path: str) -> list[tuple[Any, str]]:
    """(id or None, question) for each line ``{"question": ..., "id": ...}``; other fields are ignored."""
    out = []
    for where, obj in jsonl_objects(path):
        q = obj.get("question")
        if not isinstance(q, str):
            raise InvalidInput(f"{where}: expected a 'question' string" +
                               ("" if q is None else f", got {type(q).__name__}"))
        if not q.strip():
            raise InvalidInput(f"{where}: question is empty")
        out.append((obj.get("id"), q))
    return out
