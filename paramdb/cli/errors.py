"""The one place where errors become what the user sees: a one-line message and an exit code.

A ParamDBError is the user's to fix: ``error: <message>`` on stderr, exit ``exc.exit_code``, no traceback.
Anything else is a bug: ``error: internal error: ...``, exit 70 (EX_SOFTWARE). ``--debug`` adds the
traceback. Ctrl-C is one line, ``interrupted`` (with what an insert committed: InsertInterrupted), exit 130
as shells report SIGINT, instead of click's bare ``Aborted!``. click's own usage errors (exit 2), ``Exit``
and ``Abort`` pass through untouched.
"""
from __future__ import annotations

import errno
import traceback

import click

from paramdb.errors import InsertInterrupted, ParamDBError

from .output import say

INTERNAL_ERROR = 70
INTERRUPTED = 130


def one_line(text: object) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def report(exc: BaseException, debug: bool) -> int:
    """Print ``exc`` for the user (with its traceback when ``debug``); return the exit code."""
    if debug:
        click.echo("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip(), err=True)
    if isinstance(exc, ParamDBError):
        message, code = one_line(exc) or type(exc).__name__, exc.exit_code
    else:
        message, code = f"internal error: {type(exc).__name__}: {one_line(exc)}", INTERNAL_ERROR
        if not debug:
            message += " (rerun with --debug for the traceback)"
    say(f"error: {message}", err=True)
    return code


class ParamDBGroup(click.Group):
    """A click group whose subcommands' errors are reported by :func:`report`."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            if isinstance(exc, OSError) and exc.errno == errno.EPIPE:
                raise                            # click's main handles a closed pipe quietly
            ctx.exit(report(exc, debug=bool(ctx.params.get("debug"))))
        except KeyboardInterrupt as exc:
            say(str(exc) if isinstance(exc, InsertInterrupted) else "interrupted", err=True)
            ctx.exit(INTERRUPTED)
