"""The commands: each parses its options, calls one ParamDB method and prints the result."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

import paramdb
from paramdb.config import MODES
from paramdb.errors import InvalidInput, ParamDBError, StoreExists
from paramdb.layout import Layout
from paramdb.options import AnswerOptions

from .output import say, shown_id
from .options import (PRECISION_KEY, adapter_dtype_option, adapter_weight_option, device_option, full_option,
                      json_option, k_option, merge_option, method_option, store_argument, where_options)
from .readers import read_documents, read_questions

SNIPPET = 80


def open_db(path: str, create: bool = False, **kwargs) -> "paramdb.ParamDB":
    """The one way commands open a store (tests replace it to inject a tiny model)."""
    return paramdb.ParamDB.open(path, create, **kwargs)


def echo_json(value) -> None:
    click.echo(json.dumps(value, ensure_ascii=False))


def snippet(text: str, width: int = SNIPPET) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[:width - 1] + "…"


def doc_json(doc) -> dict:
    return {"id": doc.id, "text": doc.text, "metadata": doc.metadata, "adapter": doc.adapter_kind}


def hit_json(hit) -> dict:
    """A hit as `get --json` shows its row (doc_json: a Hit has the same fields), with its score after the id."""
    return {"id": hit.id, "score": hit.score} | doc_json(hit)


def answer_json(answer) -> dict:
    return {"answer": answer.text, "generation": answer.generation, "mode": answer.mode,
            "hits": [hit_json(h) for h in answer.hits], "timings": answer.timings, "notes": answer.notes}


class InsertProgress:
    """``db.insert``'s progress callback: docs done/total, docs/s and ETA on stderr. On a terminal one line
    redrawn in place (from 0/N on); otherwise one line per committed batch, for logs."""

    def __init__(self, total: int):
        self.total, self.start = total, time.monotonic()
        self.tty = sys.stderr.isatty()
        self._drawn = 0                   # width of the line left open on the terminal

    def __enter__(self) -> "InsertProgress":
        if self.tty:
            self(0, self.total)
        return self

    def __exit__(self, *exc) -> None:
        if self._drawn:
            click.echo(err=True)          # an error message must not land on the progress line

    def __call__(self, done: int, total: int) -> None:
        elapsed = time.monotonic() - self.start
        rate = done / elapsed if done and elapsed > 0 else 0.0
        eta = f"{(self.total - done) / rate:.0f}s" if rate else "?"
        line = f"inserting: {done}/{self.total} docs  {rate:.2f} docs/s  ETA {eta}"
        if self.tty:
            click.echo("\r" + line.ljust(self._drawn), nl=False, err=True)
            self._drawn = max(self._drawn, len(line))
        else:
            click.echo(line, err=True)


# ------------------------------------------------------------------------------------------ writing
@click.command()
@store_argument
@click.option("--model", type=click.Path(resolve_path=True), default=None, metavar="PATH",
              help="Base model: Hugging Face folder or GGUF file (default: packaged SmolLM2-135M-Instruct).")
@click.option("--embedder", type=click.Path(resolve_path=True), default=None, metavar="PATH",
              help="Sentence-transformers folder (default: MiniLM).")
@click.option("--meta-url", default=None, metavar="URL", help="SQLAlchemy URL for metadata (default: SQLite).")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Training epochs per document.")
@click.option("--rank", type=click.IntRange(min=1), default=None, help="LoRA rank.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None, help="Learning rate.")
@click.option("--stop-loss", type=click.FloatRange(min=0), default=None,
              help="A document stops training after an epoch whose mean loss is below this (0: all epochs).")
@click.option("--layers", type=click.FloatRange(min=0, max=1, min_open=True), default=None, metavar="F",
              help="Fraction of decoder layers, from the top, that train (a shorter backward pass; docs/recipe.md).")
@click.option("--no-passage-sample", is_flag=True, default=False,
              help="Train on the question samples only, not also on the whole passage (fewer tokens).")
@click.option("--short-answers", is_flag=True, default=False,
              help="Also train each question against a short answer span, asked with a short-answer prompt.")
@adapter_dtype_option
@device_option
def init(store, model, embedder, meta_url, epochs, rank, lr, stop_loss, layers, no_passage_sample, short_answers,
         adapter_dtype, device):
    """Create a new store at STORE (fixes its base model, embedder, training settings and adapter dtype).

    \b
    Examples:
      paramdb init mystore
      paramdb init mystore --model ~/models/SmolLM2-135M-Instruct --epochs 5 --rank 4
      paramdb init mystore --adapter-dtype int8
      paramdb init mystore --precision bf16
      paramdb init mystore --layers 0.5 --no-passage-sample
      paramdb init mystore --short-answers
      paramdb init mystore --meta-url postgresql+psycopg://user@dbhost/paramdb
    """
    if Layout(Path(store)).exists():     # open(create=True) would silently open an existing store
        raise StoreExists(f"a store already exists at {store}")
    training = {k: v for k, v in {"epochs": epochs, "rank": rank, "lr": lr, "stop_loss": stop_loss,
                                  "layers": layers}.items() if v is not None}
    augment = {k: v for k, v in {"short_answers": short_answers or None,
                                 "passage_sample": False if no_passage_sample else None}.items() if v is not None}
    precision = click.get_current_context().meta.get(PRECISION_KEY)      # --precision: the store's setting
    with open_db(store, create=True, model=model, embedder=embedder, meta_url=meta_url, device=device,
                    training=training or None, adapter_dtype=adapter_dtype, augment=augment or None,
                    precision=precision) as db:
        say(f"created store at {db.path} (base model: {db.config.model}, {db.config.adapter_dtype} adapters)")


@click.command()
@store_argument
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--upsert", is_flag=True, help="Replace documents whose id is already stored.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Documents trained together (and committed together).")
@click.option("--create", is_flag=True, help="Create the store (default model) if it does not exist.")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Parameterize on a Ray cluster (auto, HOST:PORT, ray://HOST:10001); alone: a local Ray.")
@click.option("--ray-workers", type=click.IntRange(min=1), default=None, metavar="N",
              help="Ray workers (default: one per GPU, else per CPU of the cluster).")
@click.option("--translate", is_flag=True,
              help="Write adapters with the store's translator in one forward pass (no training); "
                   "`paramdb refine` trains them later. Needs `paramdb distill` first.")
@click.option("--defer", is_flag=True,
              help="Store each document with its embedding only, at embedding speed (no adapter yet: a pending "
                   "row, answered from its passage); `paramdb refine` trains them later.")
@device_option
@json_option
def insert(store, files, upsert, batch_size, create, ray_address, ray_workers, translate, defer, device, as_json):
    """Parameterize and store documents from FILE... (.jsonl: one {"text", "id", "metadata"} per line;
    any other file: one document, id = file stem; -: JSONL on stdin). Nothing is added if any is invalid.
    A document without an id gets one from its text, and one already stored with the same text and metadata
    is skipped, so rerunning an interrupted insert stores only the rest.

    \b
    Examples:
      paramdb insert mystore docs.jsonl notes.txt
      cat docs.jsonl | paramdb insert mystore - --upsert
      paramdb insert mystore docs.jsonl --ray --ray-workers 8
      paramdb insert mystore docs.jsonl --defer && paramdb refine mystore
    """
    on_ray = ray_address is not None
    if defer and (translate or on_ray):
        raise InvalidInput(f"--defer stores no adapter at all: it cannot be combined with "
                           f"{'--translate' if translate else '--ray'} (nothing was stored)")
    if ray_workers and not on_ray:
        raise click.UsageError("--ray-workers needs --ray")
    if translate and on_ray:
        raise click.UsageError("--translate runs locally (one forward pass per document): drop --ray")
    docs = read_documents(files)       # an id-less document's id comes from its text: a rerun resumes
    ray = {"executor": "ray", "ray_address": None if ray_address == "local" else ray_address,
           "ray_workers": ray_workers} if on_ray else {}
    with open_db(store, create=create, device=device) as db:
        with InsertProgress(len(docs)) as progress:
            report = db.insert(docs, upsert=upsert, batch_size=batch_size, progress=progress,
                               **({"parameterize": "translate"} if translate else
                                  {"parameterize": "later"} if defer else ray))
    skipped, failed, n = report.skipped, report.failed, len(report.ids)
    for doc_id, error in failed:
        say(f"warning: document {shown_id(doc_id)} not stored: {error}", err=True)
    if as_json:
        echo_json({"inserted": n, "ids": report.ids, **({"skipped": skipped} if skipped or on_ray else {}),
                   **({"failed": [list(f) for f in failed]} if on_ray else {})})
    else:
        extra = (f" ({len(skipped)} already stored, {len(failed)} failed)" if on_ray else
                 f" ({len(skipped)} already stored)" if skipped else "")
        say(f"{'upserted' if upsert else 'inserted'} {n} document{'s' * (n != 1)}{extra}")
    if failed:
        raise ParamDBError(f"{len(failed)} document{'s' * (len(failed) != 1)} failed and were not stored "
                           "(rerun the same command to retry them)")


@click.command()
@store_argument
@click.argument("ids", nargs=-1, required=True, metavar="ID...")
def delete(store, ids):
    """Delete documents by id (all or nothing: an unknown id deletes none).

    \b
    Examples:
      paramdb delete mystore d1 d2
    """
    with open_db(store) as db:
        n = db.delete(ids)
    say(f"deleted {n} document{'s' * (n != 1)}")


# ------------------------------------------------------------------------------------------ reading
@click.command()
@store_argument
@click.argument("doc_id", metavar="ID")
@json_option
def get(store, doc_id, as_json):
    """Show one document.

    \b
    Examples:
      paramdb get mystore d1 --json
    """
    with open_db(store) as db:
        doc = db.get(doc_id)
    if as_json:
        echo_json(doc_json(doc))
    else:
        say(f"id: {shown_id(doc.id)}")
        say(f"metadata: {json.dumps(doc.metadata, ensure_ascii=False)}")
        say(f"adapter: {doc.adapter_kind}")
        say()
        say(doc.text, multiline=True)


@click.command(name="ls")
@store_argument
@click.option("--limit", type=click.IntRange(min=0), default=None, help="At most this many documents.")
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Skip this many documents first.")
@where_options
@json_option
def ls(store, limit, offset, where, as_json):
    """List documents (in insertion order).

    \b
    Examples:
      paramdb ls mystore --limit 20 --where src=wiki
    """
    with open_db(store) as db:
        docs = db.list(limit=limit, offset=offset, where=where)
    if as_json:
        echo_json([doc_json(d) for d in docs])
    for d in [] if as_json else docs:
        meta = json.dumps(d.metadata, ensure_ascii=False) if d.metadata else ""
        say("  ".join(x for x in (shown_id(d.id), d.adapter_kind, snippet(d.text), meta) if x))


@click.command()
@store_argument
@json_option
def stats(store, as_json):
    """Document count, sizes, base model and LoRA settings.

    \b
    Examples:
      paramdb stats mystore --json
    """
    with open_db(store) as db:
        info = db.stats()
    if as_json:
        echo_json(info)
        return
    for key, value in info.items():
        if key == "translator" and value is None:
            value = f"none (make one with `paramdb distill {store}`)"
        elif key == "translator":
            value = {k: value.get(k) for k in ("bytes", "params", "teacher", "held_out_loss", "base_loss")} | \
                {"learned_from": (value.get("learned_from") or {}).get("count")}
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        say(f"{key}: {value}")


@click.command()
@store_argument
@click.argument("text")
@k_option
@method_option
@where_options
@json_option
def query(store, text, k, method, where, as_json):
    """The k documents nearest to TEXT: rank, score, id and the start of the text.

    \b
    Examples:
      paramdb query mystore "Who invented moonrind glass?" -k 3 --where src=wiki
    """
    with open_db(store) as db:
        hits = db.query(text, AnswerOptions(k=k, where=where, method=method))
    if as_json:
        echo_json([hit_json(h) for h in hits])
    elif not hits:
        say("no matching documents", err=True)
    for rank, h in enumerate([] if as_json else hits, 1):
        say(f"{rank:>2}  {h.score:.4f}  {shown_id(h.id)}  {snippet(h.text)}")


@click.command()
@store_argument
@click.argument("question", required=False)
@click.option("--questions", "questions_file", metavar="FILE.jsonl", default=None,
              help='Answer each line {"question": ..., "id": ...} (- for stdin); one JSON line per answer.')
@click.option("--mode", default="prag", show_default=True, metavar="[" + "|".join(MODES) + "]",
              help="prag: document adapters; icl: passages in the prompt; combine: both; closed: neither.")
@k_option
@method_option
@where_options
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=48, show_default=True)
@merge_option
@adapter_weight_option
@full_option
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Questions generated together (with --questions).")
@device_option
@json_option
def generate(store, question, questions_file, mode, k, method, where, max_new_tokens, merge, adapter_weight,
             full, batch_size, device, as_json):
    """Answer QUESTION (or every question of --questions) from the store's documents.

    \b
    Examples:
      paramdb generate mystore "Who invented moonrind glass?" --mode prag -k 3
      paramdb generate mystore --questions questions.jsonl --mode combine --json
      paramdb generate mystore "Where was Ilsa Marrowby born?" --full
    """
    if (question is None) == (questions_file is None):
        raise click.UsageError("give exactly one of QUESTION or --questions FILE")
    asked = read_questions(questions_file) if questions_file else [(None, question)]
    opts = AnswerOptions(k=k, mode=mode, where=where, max_new_tokens=max_new_tokens, method=method, merge=merge,
                         adapter_weight=adapter_weight, short=not full)
    with open_db(store, device=device) as db:
        if question is not None:
            answer = db.generate(question, opts)
            if as_json:
                echo_json(answer_json(answer))
            else:
                say(answer.text)
            for note in answer.notes:
                say(f"note: {note}", err=True)
            return
        for start in range(0, len(asked), batch_size):
            chunk = asked[start:start + batch_size]
            for (qid, q), answer in zip(chunk, db.generate_batch([q for _, q in chunk], opts)):
                echo_json({"id": qid, "question": q, **answer_json(answer)})


ALL = [init, insert, query, generate, get, delete, ls, stats]
