"""Operator commands: ``backup``, ``restore``, ``verify``, ``check`` (thin layers over paramdb.ops)."""
from __future__ import annotations

import sys

import click

from . import commands
from .output import say
from .options import json_option, store_argument


@click.command()
@store_argument
@click.argument("archive", type=click.Path(dir_okay=False))
@json_option
def backup(store, archive, as_json):
    """Write a consistent snapshot of STORE to ARCHIVE (a tar with a sha256 manifest), while writers go on.

    \b
    Examples:
      paramdb backup mystore mystore-2026-12-01.tar
    """
    from paramdb.ops.backup import backup as run

    with commands.open_db(store) as db:
        manifest = run(db.handle.store, archive)
    if as_json:
        commands.echo_json(manifest)
    else:
        say(f"backed up {manifest['rows']} documents from {store} to {archive}")


@click.command()
@click.argument("archive", type=click.Path(exists=True, dir_okay=False))
@store_argument
@click.option("--force", is_flag=True, help="Replace an existing store at STORE.")
@json_option
def restore(archive, store, force, as_json):
    """Restore ARCHIVE as STORE, every checksum verified before it appears; refuses an existing store
    unless --force.

    \b
    Examples:
      paramdb restore mystore-2026-12-01.tar mystore2
      paramdb restore mystore-2026-12-01.tar mystore --force
    """
    from paramdb.ops.backup import restore as run

    manifest = run(archive, store, overwrite=force)
    if as_json:
        commands.echo_json(manifest)
    else:
        say(f"restored {manifest['rows']} documents to {store}")


@click.command()
@click.argument("path", type=click.Path(exists=True))
@json_option
def verify(path, as_json):
    """Check an archive or a store; exits 1 naming each problem found.

    \b
    Examples:
      paramdb verify mystore-2026-12-01.tar
      paramdb verify mystore
    """
    from paramdb.ops.backup import verify as run

    problems = run(path)
    if as_json:
        commands.echo_json({"ok": not problems, "problems": problems})
    else:
        for line in problems:
            say(line, err=True)
        if not problems:
            say(f"{path}: ok")
    if problems:
        sys.exit(1)


@click.command()
@store_argument
@click.option("--repair", is_flag=True, help="Fix what can be fixed without losing a committed row.")
@json_option
def check(store, repair, as_json):
    """Find damaged or missing blobs, orphan blobs and index drift in STORE; exits 1 on an unrepaired error.

    \b
    Examples:
      paramdb check mystore
      paramdb check mystore --repair --json
    """
    from paramdb.ops.check import check as run

    with commands.open_db(store) as db:
        report = run(db.handle.store, db.handle.models, repair=repair)
    if as_json:
        commands.echo_json(report.to_json())
    else:
        for finding in report.findings:
            say(str(finding), err=finding.severity == "error" and not finding.repaired)
        pending = f" ({report.pending} pending: no adapter yet, `paramdb refine` trains them)" if report.pending else ""
        say(f"{store}: {report.rows} documents{pending}, {'ok' if report.ok else 'PROBLEMS FOUND'}")
    if not report.ok:
        sys.exit(1)


ALL = [backup, restore, verify, check]
