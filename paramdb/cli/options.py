"""Arguments and options shared by several commands, each defined once."""
from __future__ import annotations

import functools
import json
import os
from typing import Any, Callable

import click

from paramdb.config import DEFAULT_MERGE, MERGES
from paramdb.errors import InvalidFilter
from paramdb.knowledge.settings import ENV_VAR, check_precision
from paramdb.retrieval import METHODS

from .readers import json_object

store_argument = click.argument("store", type=click.Path(dir_okay=True, file_okay=False))

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")

k_option = click.option("-k", "k", type=click.IntRange(min=1), default=3, show_default=True,
                        help="How many documents to retrieve.")

method_option = click.option("--method", default="hybrid", show_default=True,
                             metavar="[" + "|".join(METHODS) + "]",
                             help="Retrieval: dense (embeddings), bm25 (terms) or hybrid (both, rank-fused).")

merge_option = click.option("--merge", type=click.Choice(MERGES), default=DEFAULT_MERGE, show_default=True,
                            help="Combine the k adapters at weight 1/k each (mean), 1 each (sum, as PRAG) or "
                                 "1/rank normalised (rank: the best hit outweighs the rest).")

full_option = click.option("--full", is_flag=True,
                           help="Answer with the model's whole generation, not the short answer copied out of it.")

adapter_weight_option = click.option(
    "--adapter-weight", type=click.FloatRange(min=0), default=None, metavar="W",
    help="Scale of the merged adapters [default: 1 in prag, 0.5 in combine, where the passages are in context].")

# A plain string checked by the API (not click.Choice), so a bad value is one `error:` line like any bad input.
adapter_dtype_option = click.option(
    "--adapter-dtype", default=None, metavar="[float16|int8]",
    help="How adapters are kept: float16, or int8 (one scale per rank component: half the bytes).")

_device_option = click.option("--device", default=None, metavar="DEVICE",
                              help="Device for the language model (cpu, cuda, cuda:1, mps); default: best available.")


def _set_precision(ctx: click.Context, _param, value: str | None) -> None:
    """``--precision`` sets PARAMDB_PRECISION for this command only (the flag beats the variable, which
    beats the store's setting; the old value is put back when the command ends, so a process that runs
    commands in turn keeps its own), and ``init`` also records it in the store."""
    if value is None:
        return
    value = check_precision(value.strip().lower())
    before = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = value
    ctx.meta[PRECISION_KEY] = value
    ctx.call_on_close(lambda: os.environ.__setitem__(ENV_VAR, before) if before is not None
                      else os.environ.pop(ENV_VAR, None))


PRECISION_KEY = "paramdb.precision"
precision_option = click.option(
    "--precision", default=None, metavar="[auto|fp32|bf16]", expose_value=False, callback=_set_precision,
    help="Base model dtype: bf16 or fp32; auto (default) picks bf16 only where the hardware multiplies it "
         "natively [env: PARAMDB_PRECISION].")


def device_option(command):
    """``--device`` and ``--precision``: where and in which dtype the language model runs."""
    return _device_option(precision_option(command))


def _where_value(raw: str) -> Any:
    """A --where value: JSON when it parses (numbers, true/false, operator objects), else the string."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return raw


def parse_where(pairs: tuple[str, ...] = (), where_json: str | None = None) -> dict | None:
    """``--where KEY=VALUE`` (repeatable) and ``--where-json`` as one Chroma-style filter (all ANDed)."""
    clauses = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidFilter(f"--where {pair!r}: expected KEY=VALUE (e.g. --where year=2024)")
        clauses.append({key.strip(): _where_value(value)})
    if where_json is not None:
        parsed = json_object(where_json, "--where-json", InvalidFilter)
        if parsed:
            clauses.append(parsed)
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def where_options(f: Callable) -> Callable:
    """Adds --where and --where-json; the command receives them combined as ``where`` (dict or None)."""
    @functools.wraps(f)
    def wrapper(*args, where_pairs: tuple[str, ...], where_json: str | None, **kwargs):
        return f(*args, where=parse_where(where_pairs, where_json), **kwargs)

    wrapper = click.option("--where-json", metavar="JSON", default=None,
                           help='A full metadata filter, e.g. \'{"year": {"$gte": 2020}}\'.')(wrapper)
    return click.option("--where", "where_pairs", metavar="KEY=VALUE", multiple=True,
                        help="Metadata filter; VALUE is JSON if it parses, else a string. Repeat to AND.")(wrapper)
