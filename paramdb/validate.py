"""Argument checks for ParamDB's public methods, in one place, run before any expensive or lasting work.

Each check either returns the value (sometimes normalised, e.g. one id to a list) or raises InvalidInput
with one line naming the argument. They exist because what slips past them fails late and badly: a lone
surrogate only fails inside the tokenizer after the model has loaded, a NaN nested in metadata makes
SQLite's JSON functions fail on every filtered query, an id with a NUL cannot be typed back on a command
line, and a str passed where a list belongs is silently read as one question per character.
"""
from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable
from typing import Any

from .content_ids import content_id
from .errors import InvalidInput
from .types import Document

MAX_ID_BYTES = 256
MAX_DEPTH = 32                      # metadata nesting; a where filter's nesting is bounded in storage/where.py
INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1
KEY_FORBIDDEN = ('"', "\\")         # a filter names a key inside a JSON path: these cannot be spelt there


def unicode_text(value: str, what: str) -> str:
    """Refuse lone surrogates (what undecodable bytes become on a command line): UTF-8 cannot store them."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"{what} is not valid Unicode: lone surrogate {value[exc.start]!r} at character "
                           f"{exc.start}") from None
    return value


def _control(value: str) -> str | None:
    return next((ch for ch in value if unicodedata.category(ch) == "Cc"), None)


def doc_id(value: Any, what: str = "id") -> str:
    """An id as stored: a non-empty string of at most 256 UTF-8 bytes without control characters
    (a NUL or a newline in an id could not be given back to `paramdb get` or `paramdb delete`)."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{what} must be a non-empty string, got {value!r}")
    unicode_text(value, what)
    bad = _control(value)
    if bad is not None:
        raise InvalidInput(f"{what} {value!r} contains the control character {bad!r}")
    if len(value.encode("utf-8")) > MAX_ID_BYTES:
        raise InvalidInput(f"{what} is longer than {MAX_ID_BYTES} bytes")
    return value


def lookup_ids(ids: Any) -> list[str]:
    """One id or an iterable of ids (for delete), each a string."""
    if isinstance(ids, str):
        ids = [ids]
    elif ids is None or isinstance(ids, (bytes, bytearray, dict)) or not isinstance(ids, Iterable):
        raise InvalidInput(f"ids must be a string or a list of strings, got {type(ids).__name__}")
    out = list(ids)
    for i in out:
        if not isinstance(i, str):
            raise InvalidInput(f"ids must be strings, got {type(i).__name__} {i!r}")
        unicode_text(i, f"id {i!r}")
    return out


def document(item: Any, where: str) -> Document:
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
    unicode_text(item.text, f"{where}: text")
    ident = doc_id(item.id if item.id is not None else content_id(item.text), f"{where}: id")
    return Document(text=item.text, id=ident, metadata=dict(metadata(item.metadata, where)))


def documents(located: Iterable[tuple[str, Any]]) -> list[Document]:
    """Validate a batch of (where, item) pairs; an id repeated inside the batch names both places."""
    docs, seen = [], {}
    for where, item in located:
        doc = document(item, where)
        if doc.id in seen:
            raise InvalidInput(f"{where}: duplicate id {doc.id!r} (also at {seen[doc.id]})")
        seen[doc.id] = where
        docs.append(doc)
    return docs


def documents_arg(docs: Any) -> None:
    """What insert accepts: one document (str, dict, Document) or an iterable of them."""
    if isinstance(docs, (str, dict, Document)):
        return
    if docs is None or isinstance(docs, (bytes, bytearray)) or not isinstance(docs, Iterable):
        raise InvalidInput("insert takes a str, dict or Document, or a list or iterable of them, got "
                           f"{type(docs).__name__}")


def insert_args(docs: Any, batch_size: Any, executor: Any, parameterize: Any) -> None:
    """``insert``'s arguments, refused before any model or translator is loaded or any document read (each
    document is checked by :func:`documents` as the insert pipeline reads it)."""
    from .config import EXECUTORS, PARAMETERIZE

    documents_arg(docs)
    positive_int(batch_size, "batch size")
    if parameterize not in PARAMETERIZE:
        raise InvalidInput(f"unknown parameterize {parameterize!r}; valid: {', '.join(PARAMETERIZE)}")
    if executor not in EXECUTORS:
        raise InvalidInput(f"unknown executor {executor!r}; valid: {', '.join(EXECUTORS)}")
    if executor == "ray" and parameterize != "train":   # one forward pass, or none, per document
        raise InvalidInput(f"parameterize={parameterize!r} runs locally: use executor='local'")


def open_args(path: Any, creating: bool, readonly: bool, training: Any, augment: Any) -> None:
    """``open``'s arguments that only make sense when a store is made (or never together)."""
    if creating and readonly:
        raise InvalidInput(f"cannot create a store read-only: no store at {path}")
    if not creating and (training or augment):
        raise InvalidInput("training and augmentation settings are fixed when a store is created")


def export_args(ids: Any, question: Any) -> None:
    """``export_peft`` writes either rows' adapters or one question's merge."""
    if (question is None) == (not ids):
        raise InvalidInput("export either ids or a question's merged adapter, not both or neither")


def positive_int(value: Any, what: str) -> int:
    """An int >= 1; a bool, float or numeric string is refused rather than silently truncated or compared."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{what} must be an integer, got {type(value).__name__} {value!r}")
    if value < 1:
        raise InvalidInput(f"{what} must be at least 1, got {value}")
    return value


def refine_args(batch_size: Any, limit: Any, interval: Any) -> None:
    """``refine``'s knobs, refused before any model is loaded or any row trained."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInput(f"batch size must be at least 1, got {batch_size!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InvalidInput(f"limit must be at least 1, got {limit!r}")
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not interval > 0:
        raise InvalidInput(f"interval must be above 0 seconds, got {interval!r}")


def distill_args(teacher: Any, teachers: Iterable[str], epochs: Any, limit: Any, held_out: Any) -> None:
    """``distill``'s knobs, refused before any sample is written or any step trained."""
    if teacher not in teachers:
        raise InvalidInput(f"unknown teacher {teacher!r}; valid: {', '.join(teachers)}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise InvalidInput(f"epochs must be at least 1, got {epochs!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InvalidInput(f"limit must be at least 1, got {limit!r}")
    if isinstance(held_out, bool) or not isinstance(held_out, (int, float)) or not 0 <= held_out < 1:
        raise InvalidInput(f"held-out fraction must be in [0, 1), got {held_out!r}")


def flag(value: Any, what: str) -> bool:
    """A yes/no argument: a bool, not a truthy string ("false" would read as yes)."""
    if not isinstance(value, bool):
        raise InvalidInput(f"{what} must be True or False, got {type(value).__name__} {value!r}")
    return value


def mode(value: Any) -> str:
    """One of config.MODES (prag, icl, combine, closed)."""
    from .config import MODES

    if value not in MODES:
        raise InvalidInput(f"unknown mode {value!r}; valid modes: {', '.join(MODES)}")
    return value


def merge(value: Any) -> str:
    """One of config.MERGES: how a question's k adapters are weighed."""
    from .config import MERGES

    if value not in MERGES:
        raise InvalidInput(f"unknown merge {value!r}; valid: {', '.join(MERGES)}")
    return value


def question_list(questions: Any) -> list[str]:
    """A non-empty list of non-empty questions: a bare str would otherwise be one question per character."""
    if isinstance(questions, (str, bytes, bytearray)) or not isinstance(questions, Iterable):
        raise InvalidInput(f"questions must be a list of strings, got {type(questions).__name__} "
                           "(use generate() for one question)")
    questions = list(questions)
    if not questions:
        raise InvalidInput("questions is an empty list: nothing to answer")
    for q in questions:
        query_text(q, "question")
    return questions


def query_text(text: Any, what: str = "query text") -> str:
    if not isinstance(text, str):
        raise InvalidInput(f"{what} must be a string, got {type(text).__name__}")
    if not text.strip():
        raise InvalidInput(f"{what} is empty")
    return unicode_text(text, what)


def metadata(meta: Any, where: str) -> dict:
    """A JSON object that SQLite and PostgreSQL store and filter alike: string keys (top-level ones free of
    quotes, backslashes and control characters, which a filter could not name), at most 32 levels deep, no
    NaN or Infinity and no integer beyond 64 bits at any depth, only JSON types, valid Unicode throughout."""
    if not isinstance(meta, dict):
        raise InvalidInput(f"{where}: metadata must be an object, got {type(meta).__name__}")
    for k in meta:
        if not isinstance(k, str) or not k:
            raise InvalidInput(f"{where}: metadata keys must be non-empty strings, got {k!r}")
        bad = next((c for c in KEY_FORBIDDEN if c in k), None) or _control(k)
        if bad is not None:
            raise InvalidInput(f"{where}: metadata key {k!r} contains {bad!r}, which a filter cannot name")
    _json_value(meta, f"{where}: metadata", 0)
    return meta


def _json_value(value: Any, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise InvalidInput(f"{path} is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, str):
        unicode_text(value, path)
    elif isinstance(value, bool) or value is None:
        pass
    elif isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise InvalidInput(f"{path} is an integer beyond 64 bits ({value}); store it as a string")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"{path} is not a finite number ({value})")
    elif isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidInput(f"{path}: keys must be strings, got {k!r}")
            unicode_text(k, f"{path} key")
            _json_value(v, f"{path}.{k}", depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _json_value(v, f"{path}[{i}]", depth + 1)
    else:
        raise InvalidInput(f"{path} is a {type(value).__name__}, which is not a JSON value")
