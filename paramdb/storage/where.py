"""Chroma-style ``where=`` filters over the JSON metadata column, as SQL that SQLite and PostgreSQL both run.

A value only matches a filter value of the same JSON type: without that check SQLite would compare the
string "ten" as 0 and PostgreSQL would abort the query on a failed cast.
"""
from __future__ import annotations

import math
import unicodedata
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from paramdb.errors import InvalidFilter

__all__ = ["where_clause"]

_CMP = {"$eq": "__eq__", "$ne": "__ne__", "$gt": "__gt__", "$gte": "__ge__", "$lt": "__lt__", "$lte": "__le__"}
_OPS = (*_CMP, "$in", "$nin")
_Scalar = (str, int, float, bool)
MAX_DEPTH = 32      # nesting of $and/$or: far beyond any real filter, well short of Python's recursion limit
_INT64 = (-(2 ** 63), 2 ** 63 - 1)


class _JsonIs(FunctionElement[bool]):
    """True when ``metadata[key]`` holds a JSON value of one kind (subclasses pick it).

    Guards each typed accessor inside a CASE: without it SQLite casts 'abc' to 0.0 and ``true`` to 1,
    and PostgreSQL aborts the whole query casting a string to float.
    """

    type = sa.Boolean()
    inherit_cache = True
    sqlite_types: tuple[str, ...] = ()
    pg_type = ""


class _IsStr(_JsonIs):
    name, sqlite_types, pg_type = "paramdb_is_str", ("text",), "string"
    inherit_cache = True


class _IsNum(_JsonIs):
    name, sqlite_types, pg_type = "paramdb_is_num", ("integer", "real"), "number"
    inherit_cache = True


class _IsBool(_JsonIs):
    name, sqlite_types, pg_type = "paramdb_is_bool", ("true", "false"), "boolean"
    inherit_cache = True


@compiles(_JsonIs)
def _is_default(el: _JsonIs, compiler: Any, **kw: Any) -> str:
    return "1 = 1"  # other dialects: trust the accessor's cast


@compiles(_JsonIs, "sqlite")
def _is_sqlite(el: _JsonIs, compiler: Any, **kw: Any) -> str:
    col, path, _key = el.clauses
    types = ", ".join(f"'{t}'" for t in el.sqlite_types)
    return f"json_type({compiler.process(col, **kw)}, {compiler.process(path, **kw)}) IN ({types})"


@compiles(_JsonIs, "postgresql")
def _is_pg(el: _JsonIs, compiler: Any, **kw: Any) -> str:
    col, _path, key = el.clauses
    return f"json_typeof({compiler.process(col, **kw)} -> {compiler.process(key, **kw)}) = '{el.pg_type}'"


def _typed(col: sa.Column, key: str, sample: Any) -> ColumnElement[Any]:
    """``metadata[key]`` read as the type of ``sample``; NULL when absent or of another JSON type."""
    guard, access = ((_IsBool, col[key].as_boolean()) if isinstance(sample, bool) else
                     (_IsNum, col[key].as_float()) if isinstance(sample, (int, float)) else
                     (_IsStr, col[key].as_string()))
    args = (col, sa.literal(f'$."{key}"', sa.String), sa.literal(key, sa.String))
    return sa.case((guard(*args), access))


def _check_value(key: str, op: str, v: Any) -> None:
    if not isinstance(v, _Scalar) or (op in ("$gt", "$gte", "$lt", "$lte") and isinstance(v, (str, bool))):
        kinds = "a number" if op in ("$gt", "$gte", "$lt", "$lte") else "a str, int, float or bool"
        raise InvalidFilter(f"where filter {key!r} {op}: value {_shown(v)} must be {kinds}")
    if isinstance(v, float) and not math.isfinite(v):
        raise InvalidFilter(f"where filter {key!r} {op}: value {v!r} is not a finite number")
    if isinstance(v, int) and not isinstance(v, bool) and not _INT64[0] <= v <= _INT64[1]:
        raise InvalidFilter(f"where filter {key!r} {op}: integer {v} is beyond 64 bits")
    if isinstance(v, str):
        _check_unicode(v, f"where filter {key!r} {op}: value")


def _shown(value: Any) -> str:
    """repr for the message, short; a value nested thousands deep has no repr (RecursionError)."""
    try:
        text = repr(value)
    except RecursionError:
        return f"(a deeply nested {type(value).__name__})"
    return text if len(text) <= 80 else text[:77] + "..."


def _check_unicode(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidFilter(f"{what} is not valid Unicode (lone surrogate at character {exc.start})") from None


def _field(col: sa.Column, key: str, cond: Any) -> ColumnElement[bool]:
    if not isinstance(cond, dict):
        cond = {"$eq": cond}
    if not cond:
        raise InvalidFilter(f"where filter {key!r}: empty operator dict")
    parts = []
    for op, v in cond.items():
        if op in _CMP:
            _check_value(key, op, v)
            if op == "$ne":  # negation of $eq: also matches rows lacking the key or of another type
                parts.append(sa.not_(sa.func.coalesce(_typed(col, key, v) == v, False)))
            else:
                parts.append(getattr(_typed(col, key, v), _CMP[op])(v))
        elif op in ("$in", "$nin"):
            if not isinstance(v, (list, tuple)):
                raise InvalidFilter(f"where filter {key!r} {op}: value must be a list, got {type(v).__name__}")
            for x in v:
                _check_value(key, op, x)
            kinds = {bool: [x for x in v if isinstance(x, bool)], str: [x for x in v if isinstance(x, str)],
                     float: [x for x in v if isinstance(x, (int, float)) and not isinstance(x, bool)]}
            hit = sa.or_(sa.false(), *(_typed(col, key, xs[0]).in_(xs) for xs in kinds.values() if xs))
            parts.append(hit if op == "$in" else sa.not_(sa.func.coalesce(hit, False)))
        else:
            raise InvalidFilter(f"unknown operator {op!r} in where filter; valid: {', '.join(_OPS)}")
    return sa.and_(*parts)


def where_clause(table: sa.Table, where: dict[str, Any], _depth: int = 0) -> ColumnElement[bool]:
    """Translate a Chroma-style ``where`` dict to SQL over ``table.c.metadata`` (SQLite and PostgreSQL)."""
    if _depth > MAX_DEPTH:
        raise InvalidFilter(f"where filter is nested more than {MAX_DEPTH} levels deep")
    if not isinstance(where, dict):
        raise InvalidFilter(f"where filter must be a dict, got {type(where).__name__}")
    col = table.c["metadata"]
    parts = []
    for key, cond in where.items():
        if key in ("$and", "$or"):
            if not isinstance(cond, list) or not cond:
                raise InvalidFilter(f"where filter {key} needs a non-empty list of filters")
            subs = [where_clause(table, c, _depth + 1) for c in cond]
            parts.append(sa.and_(*subs) if key == "$and" else sa.or_(*subs))
        elif not isinstance(key, str) or key.startswith("$"):
            raise InvalidFilter(f"unknown operator {key!r} in where filter; valid: $and, $or")
        elif '"' in key or "\\" in key or any(unicodedata.category(ch) == "Cc" for ch in key):
            raise InvalidFilter(f"where filter key {key!r} may not contain a double quote, a backslash or a "
                                "control character (no stored key has one)")
        else:
            _check_unicode(key, f"where filter key {key!r}")
            parts.append(_field(col, key, cond))
    return sa.and_(sa.true(), *parts)
