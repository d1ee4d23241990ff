"""``distill`` and ``refine``: make the store's translator, and later train what it translated."""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from dataclasses import asdict

import click

from paramdb.knowledge.distill import TEACHERS
from paramdb.knowledge.translator import parse_settings
from paramdb.ops import refine as refine_op

from . import commands
from .commands import InsertProgress, echo_json
from .options import device_option, json_option, store_argument
from .readers import read_documents


class DistillProgress:
    """Steps on one redrawn line on a terminal (one line per epoch in logs), held-out loss per epoch."""

    def __init__(self):
        self.tty, self.start = sys.stderr.isatty(), time.monotonic()

    def __call__(self, e: dict) -> None:
        t = time.monotonic() - self.start
        if e["event"] == "samples":
            line = f"samples: {e['done']}/{e['total']} docs  {t:.0f}s"
        elif e["event"] == "step":
            line = f"epoch {e['epoch']}/{e['epochs']}  step {e['step']}/{e['steps']}  loss {e['loss']:.4f}  {t:.0f}s"
        else:
            held = "n/a" if e["held_out_loss"] is None else f"{e['held_out_loss']:.4f}"
            base = "n/a" if e["base_loss"] is None else f"{e['base_loss']:.4f}"
            click.echo(("\r" if self.tty else "") + f"epoch {e['epoch']}: train loss {e['train_loss']:.4f}, "
                       f"held-out loss {held} (no adapter: {base})  {t:.0f}s", err=True)
            return
        if self.tty:
            click.echo("\r" + line.ljust(72), nl=False, err=True)


def _settings(ctx, param, values) -> dict:
    try:
        return parse_settings(values)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


@click.command()
@store_argument
@click.option("--from", "from_files", multiple=True, metavar="FILE.jsonl",
              help="Learn from these passages instead of the store's rows (a new, empty store can start fast).")
@click.option("--teacher", type=click.Choice(TEACHERS), default="context", show_default=True,
              help="context: match the model reading the passage (no trained adapters needed); adapter: "
                   "regress to the rows' trained adapters (DyPRAG).")
@click.option("--epochs", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-3, show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Learn from at most this many documents.")
@click.option("--held-out", type=click.FloatRange(min=0, max=1, max_open=True), default=0.1, show_default=True,
              help="Fraction of documents kept out of training to report the held-out loss.")
@click.option("--setting", "settings", multiple=True, metavar="KEY=VALUE", callback=_settings,
              help="Translator shape, e.g. lexical=4 or layers=8 (repeatable; see docs/translator.md).")
@device_option
@json_option
def distill(store, from_files, teacher, epochs, lr, limit, held_out, settings, device, as_json):
    """Train STORE's translator (document in, adapter out) and store it; `insert --translate` then writes
    adapters in one forward pass. Safe to interrupt: the translator is written in one transaction at the end.

    \b
    Examples:
      paramdb distill mystore
      paramdb distill mystore --teacher adapter --epochs 3
      paramdb distill newstore --from passages.jsonl
      paramdb distill mystore --setting lexical=4 --setting layers=8
    """
    source = read_documents(from_files) if from_files else None
    from paramdb.ops.distill_store import distill as run

    with commands.open_db(store, device=device) as db:
        result = run(db.handle.store, db.handle.models, source, teacher=teacher, epochs=epochs, lr=lr,
                     limit=limit, held_out=held_out, translator=settings, progress=DistillProgress())
    if as_json:
        echo_json(asdict(result))
        return
    held = "n/a" if result.held_out_loss is None else f"{result.held_out_loss:.4f}"
    base = "n/a" if result.base_loss is None else f"{result.base_loss:.4f}"
    click.echo(f"distilled a translator from {result.docs} documents ({result.teacher} teacher, "
               f"{result.seconds_per_doc:.2f} s/doc): held-out loss {held} vs {base} with no adapter; "
               f"{result.translator_bytes} bytes ({result.translator_bytes / result.adapter_bytes:.1f} adapters)")


@click.command()
@store_argument
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Documents trained together (and committed together).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Refine at most this many documents.")
@click.option("--watch", is_flag=True,
              help="Keep going: train rows as they arrive, until Ctrl-C or SIGTERM (then finish the batch in "
                   "training, commit it and exit 0 with a summary; a second signal abandons it).")
@click.option("--interval", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True,
              metavar="S", help="With --watch: seconds between looks for new rows when none is left.")
@device_option
@json_option
def refine(store, batch_size, limit, watch, interval, device, as_json):
    """Train STORE's pending rows (insert --defer) and replace its translated adapters (insert --translate) with
    trained ones, while the store stays in use: the writer lock is taken only to commit each batch, and a row
    changed meanwhile is left as it is. Resumable: a kill loses nothing, a rerun does the rest.

    \b
    Examples:
      paramdb refine mystore
      paramdb refine mystore --limit 100
      paramdb refine mystore --watch --interval 2
    """
    if interval != 5.0 and not watch:
        raise click.UsageError("--interval needs --watch")
    stop = threading.Event()
    with commands.open_db(store, device=device) as db:
        h = db.handle
        h.store.lock.refuse_if_readonly("refine")          # before any model is loaded
        if watch:
            with _stop_on_signals(stop):
                result = refine_op.refine(h.store, h.models, batch_size=batch_size, limit=limit, watch=True,
                                          interval=interval, stop=stop, on_batch=None if as_json else _batch_line)
        else:
            total = refine_op.waiting(h.store.meta)
            with InsertProgress(total if limit is None else min(limit, total)) as progress:
                result = refine_op.refine(h.store, h.models, batch_size=batch_size, limit=limit, progress=progress)
    if as_json:
        echo_json(asdict(result))
    else:
        how = " (interrupted: the batch in training was abandoned, nothing of it written)" if result.interrupted \
            else ""
        click.echo(f"refined {result.refined} documents in {result.seconds:.0f} s ({len(result.skipped)} changed "
                   f"meanwhile, left as they are; {result.pending} still pending, {result.translated} still "
                   f"translated){how}")


def _batch_line(result) -> None:
    click.echo(f"refined {result.refined} documents so far ({result.pending} pending, {result.translated} "
               f"translated left)", err=True)


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event):
    """SIGINT and SIGTERM ask ``refine --watch`` to stop after the batch in training is committed; a second
    one raises KeyboardInterrupt, which abandons that batch (refine catches it: nothing of it is written)."""
    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        click.echo(f"{signal.Signals(signum).name}: stopping after the batch in training is committed "
                   "(again to abandon it)", err=True)

    before = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in before.items():
            signal.signal(s, h)


TRANSLATOR_COMMANDS = [distill, refine]
