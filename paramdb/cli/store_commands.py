"""Commands over a whole store's format and location: ``migrate``, ``copy`` and ``compact`` (thin layers over
paramdb.ops)."""
from __future__ import annotations

from dataclasses import asdict

import click

from .commands import echo_json
from .output import say
from .options import adapter_dtype_option, json_option, store_argument


@click.command()
@store_argument
@json_option
def migrate(store, as_json):
    """Upgrade STORE, written by an earlier ParamDB, to this version's format (SQL schema and LMDB values).
    Safe to interrupt: rerun it to finish.

    \b
    Examples:
      paramdb migrate mystore
    """
    from paramdb.ops.migrate import migrate as run

    report = run(store)
    if as_json:
        echo_json({**asdict(report), "changed": report.changed})
    elif report.changed:
        say(f"migrated {report.path} from format {report.format_before} to {report.format_after} "
                   f"(schema {report.schema_before} -> {report.schema_after}, {report.rows} rows verified)")
    else:
        say(f"{report.path} is already at format {report.format_after} ({report.rows} rows verified)")
    if report.damaged:
        shown = ", ".join(report.damaged[:5]) + (" ..." if len(report.damaged) > 5 else "")
        say(f"warning: {len(report.damaged)} rows have a damaged or missing adapter or embedding "
                   f"({shown}); run `paramdb check {store}`", err=True)


@click.command()
@click.argument("src", type=click.Path(dir_okay=True, file_okay=False))
@click.argument("dst", type=click.Path(dir_okay=True, file_okay=False))
@click.option("--meta-url", default=None, metavar="URL",
              help="SQLAlchemy URL for the copy's metadata, e.g. postgresql+psycopg://user@host/db "
                   "(default: a SQLite file inside DST).")
@json_option
def copy(src, dst, meta_url, as_json):
    """Copy the store SRC to a new store DST: every row and adapter bit for bit (e.g. to move its metadata
    between SQLite and PostgreSQL).

    \b
    Examples:
      paramdb copy mystore mystore-pg --meta-url postgresql+psycopg://user@dbhost/paramdb
      paramdb copy mystore-pg mystore-back
    """
    from paramdb.ops.copy import copy_store

    report = copy_store(src, dst, meta_url)
    if as_json:
        echo_json(asdict(report))
    else:
        say(f"copied {report.rows} documents from {report.source} to {report.destination} "
                   f"(metadata: {report.meta_url})")


@click.command()
@store_argument
@adapter_dtype_option
@json_option
def compact(store, adapter_dtype, as_json):
    """Convert STORE's adapters to --adapter-dtype (default int8: half the bytes) and keep new ones so.
    Safe to interrupt: every row keeps a complete adapter; rerun it to finish.

    \b
    Examples:
      paramdb compact mystore
      paramdb compact mystore --adapter-dtype float16 --json
    """
    from paramdb.ops.compact import compact as run

    report = run(store, adapter_dtype or "int8")
    if as_json:
        echo_json({**asdict(report), "ratio": round(report.ratio, 4)})
    else:
        say(f"{report.path}: {report.converted} of {report.rows} adapters converted to {report.adapter_dtype}; "
            f"adapter bytes {report.adapter_bytes_before:,} -> {report.adapter_bytes_after:,} ({report.ratio:.3f}x)"
            + (f"; {report.pending} pending rows have no adapter yet (refine writes theirs in "
               f"{report.adapter_dtype})" if report.pending else ""))
    if report.damaged:
        shown = ", ".join(report.damaged[:5]) + (" ..." if len(report.damaged) > 5 else "")
        say(f"warning: {len(report.damaged)} rows have a damaged or missing adapter and were not converted "
            f"({shown}); run `paramdb check {store} --repair`", err=True)


STORE_COMMANDS = [migrate, copy, compact]
