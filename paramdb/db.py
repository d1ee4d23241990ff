"""ParamDB: a store whose rows are documents with their own LoRA adapters.

This class is the document API, as a Chroma collection or a sqlite-utils table is: open and close, insert,
upsert, get, list, count, delete, query, generate and stats. It checks arguments, hands them to the engine
module that does the job (paramdb/engine) and shapes the result. Operator tasks (backup, check, refine,
distill, compact, ...) are functions in paramdb.ops and adapter formats in paramdb.interop, over the same
:attr:`ParamDB.handle`; nothing below this module imports it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from . import validate
from .engine import answer, commit, ingest, search, translator_blob
from .engine.handle import Handle, create_handle, open_handle
from .engine.ingest import Progress
from .errors import UnknownId
from .knowledge.embed import Embedder
from .knowledge.lora import DEFAULT_TARGETS
from .knowledge.models import LoadedModel
from .options import RETRIEVAL_FIELDS, AnswerOptions, answer_options
from .storage.lock import DEFAULT_TIMEOUT
from .types import Answer, Document, Hit, InsertReport

__all__ = ["ParamDB", "Progress"]
PARAMETERIZE = ingest.PARAMETERIZE  # how insert makes adapters: trained, translated, or "later" (pending rows)


class ParamDB:
    """Open with :meth:`open`; use as a context manager so the index is saved and files are closed."""

    def __init__(self, handle: Handle):
        self.path, self.config = handle.store.path, handle.store.config
        self._handle, self._store, self._models = handle, handle.store, handle.models

    # ---------------------------------------------------------------- opening and closing
    @classmethod
    def open(cls, path: str | Path, create: bool = False, *, model: LoadedModel | str | None = None,
             embedder: Embedder | str | None = None, meta_url: str | None = None,
             device: str | None = None, training: dict | None = None, adapter_dtype: str | None = None,
             augment: dict | None = None, lock_timeout: float = DEFAULT_TIMEOUT,
             readonly: bool = False, precision: str | None = None) -> "ParamDB":
        """Open the store at ``path``; with ``create=True`` make it first if it does not exist.

        ``model`` is a Hugging Face model folder or GGUF file (default: the packaged SmolLM2-135M-Instruct);
        it is fixed at creation and checked by weight fingerprint afterwards. ``training`` overrides the
        calibrated LoRA/training settings at creation (e.g. ``{"epochs": 5}``) and ``augment`` how training
        samples are written (e.g. ``{"short_answers": True}``: docs/recipe.md); ``adapter_dtype`` ("float16",
        the default, or "int8": half the bytes) is how adapters are kept, also fixed at creation (``paramdb
        compact`` converts an existing store). A write waits up to
        ``lock_timeout`` seconds for another process's write to finish, then raises StoreLocked.
        ``readonly=True`` (automatic where this process cannot write the store's files) reads without
        writing anything: stale derived indexes are rebuilt in memory, writes raise ReadOnlyStore.
        ``precision`` ("auto", "fp32", "bf16") is the base model's dtype for this handle; at creation it also
        becomes the store's setting. Unset, ``PARAMDB_PRECISION`` or the store's setting decides, and
        ``auto`` picks bf16 only on hardware that multiplies it natively (knowledge/precision.py).
        """
        return cls(open_handle(path, create, model=model, embedder=embedder, meta_url=meta_url, device=device,
                               training=training, adapter_dtype=adapter_dtype, augment=augment,
                               lock_timeout=lock_timeout, readonly=readonly, precision=precision))

    @classmethod
    def create(cls, path: str | Path, *, model: LoadedModel | str | None = None,
               embedder: Embedder | str | None = None, meta_url: str | None = None,
               device: str | None = None, training: dict | None = None, adapter_dtype: str | None = None,
               augment: dict | None = None, lock_timeout: float = DEFAULT_TIMEOUT,
               precision: str | None = None) -> "ParamDB":
        """Make a new store at ``path``; refuses (StoreExists) if one is there. Arguments as for :meth:`open`."""
        return cls(create_handle(path, model=model, embedder=embedder, meta_url=meta_url, device=device,
                                 training=training, adapter_dtype=adapter_dtype, augment=augment,
                                 lock_timeout=lock_timeout, precision=precision))

    @property
    def readonly(self) -> bool:
        """True when this handle only reads (asked for, or the store's files are not writable here)."""
        return self._store.lock.readonly is not None

    @property
    def handle(self) -> Handle:
        """The open store and its models that this façade works over: what the operator tasks
        (paramdb.ops: backup, check, refine, distill, ...) and paramdb.interop take, as in
        ``paramdb.ops.check.check(db.handle.store, db.handle.models)``, so one opened store serves both."""
        return self._handle

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "ParamDB":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- writing
    def insert(self, docs: Iterable[Any] | Any, *, upsert: bool = False, batch_size: int = 8,
               progress: Progress | None = None, executor: str = "local", ray_address: str | None = None,
               ray_workers: int | None = None, parameterize: str = "train") -> InsertReport:
        """Parameterize and store documents (str, dict with text/id/metadata, or Document).

        Returns an InsertReport: the ids stored, in commit order (it reads and compares as that list), plus
        ``skipped``, ``failed`` and ``stats``. A list is validated whole first (one bad item adds nothing).
        Any other iterable is streamed: read, validated and committed ``batch_size`` documents at a time, so
        memory stays bounded whatever the corpus size. Either way each batch is written atomically. Without
        ``upsert``, a document already stored with the same text and metadata is skipped (``skipped``: so a
        rerun after an interruption resumes) and another taken id is refused; ``upsert`` replaces both.
        Ctrl-C raises InsertInterrupted (a KeyboardInterrupt) whose ``committed`` lists the ids stored before it.

        ``executor="ray"`` parameterizes on a Ray cluster (``ray_address``; None starts a local instance) with
        ``ray_workers`` workers (default: one per GPU, else per CPU) while this process validates, skips and
        writes exactly as a local insert does; ``failed`` lists the (id, error) of documents that failed to
        parameterize even alone (not stored: a rerun retries them).

        ``parameterize="translate"`` writes each adapter with the store's translator (``distill``) in one
        forward pass instead of training it: no augmentation, no training; ``refine`` trains them later.
        ``parameterize="later"`` stores each row with its embedding only, at embedding speed: its
        ``adapter_kind`` is "pending", prag and combine answer it from its passage in the prompt (the answer's
        notes name it), and ``refine`` trains it later.
        """
        validate.insert_args(docs, batch_size, executor, parameterize)
        self._store.lock.refuse_if_readonly("insert")      # before any training, not after it
        if executor == "ray":
            from .distributed.ray_executor import RayExecutor

            made_by: ingest.Executor = RayExecutor(self._models.source(), ray_address, ray_workers)
        else:                                  # the translator is loaded first: a store without one says so
            made_by = ingest.LocalExecutor(self._models, parameterize,
                                           translator_blob.cached(self._store) if parameterize == "translate"
                                           else None)
        return ingest.insert(self._store, docs, made_by, upsert=upsert, batch_size=batch_size, progress=progress)

    def upsert(self, docs, **kwargs) -> InsertReport:
        return self.insert(docs, upsert=True, **kwargs)

    def delete(self, ids: str | Iterable[str]) -> int:
        """Remove documents by id; an unknown id deletes nothing and raises UnknownId."""
        return commit.delete(self._store, validate.lookup_ids(ids))

    # ---------------------------------------------------------------- reading
    def get(self, doc_id: str) -> Document:
        rows = self._store.meta.get(validate.lookup_ids(doc_id))
        if not rows:
            raise UnknownId(doc_id)
        return _document(rows[0])

    def list(self, limit: int | None = None, offset: int = 0, where: dict | None = None) -> list[Document]:
        return [_document(r) for r in self._store.meta.list(limit=limit, offset=offset, where=where)]

    def count(self, where: dict | None = None) -> int:
        return self._store.meta.count(where)

    @property
    def generation(self) -> int:
        """A number that changes with every committed write (insert, upsert, delete): whatever was computed
        from the store, such as an evaluation's answers, is still valid while it is unchanged."""
        return self._store.meta.generation()

    def __len__(self) -> int:
        return self._store.meta.count()

    def __contains__(self, doc_id: str) -> bool:
        return bool(self._store.meta.existing_ids([doc_id]))

    def query(self, text: str, options: AnswerOptions | None = None, /, **fields: Any) -> list[Hit]:
        """The ``k`` documents best matching ``text``, best first, among those whose metadata match ``where``;
        ``method``: dense (embeddings), bm25 (terms) or hybrid (both, fused by reciprocal rank). Only these
        three fields of AnswerOptions apply."""
        opts = answer_options(options, fields, RETRIEVAL_FIELDS)
        validate.query_text(text)
        return [hit for hit, _ in search.search(self._store, self._models, text, opts.k, opts.where, opts.method)]

    def stats(self) -> dict:
        c, s = self.config, self._store
        meta_bytes, blob_bytes = s.meta.size_bytes(), s.blobs.size_bytes()
        index_bytes = s.indexes.size_bytes()
        n, adapter_bytes = len(self), s.blobs.value_bytes("adapters")
        return {"path": str(self.path), "documents": n, "format_version": c.format_version,
                "base_model": c.model, "model_fingerprint": c.model_fingerprint, "embedder": c.embedder,
                "lora": {"rank": c.training.rank, "alpha": c.training.alpha,
                         "targets": list(DEFAULT_TARGETS)},
                "training": {"lr": c.training.lr, "epochs": c.training.epochs,
                             "samples_per_step": c.training.samples_per_step},
                "adapters": s.meta.adapter_kinds(), "translator": translator_blob.info(s.blobs),
                "bytes": {"metadata": meta_bytes, "blobs": blob_bytes, "index": index_bytes,
                          "total": meta_bytes + blob_bytes + index_bytes},
                # adapter_bytes: every adapter value in LMDB (rows written before a `compact` included)
                "adapter_dtype": c.adapter_dtype, "adapter_bytes": adapter_bytes,
                "adapter_bytes_per_row": round(adapter_bytes / n) if n else 0}

    # ---------------------------------------------------------------- answering
    def generate(self, question: str, options: AnswerOptions | None = None, /, **fields: Any) -> Answer:
        """Answer ``question``: retrieve its documents, then apply their merged adapters and/or put their
        passages in the prompt, as ``mode`` says. ``options`` and keyword ``fields`` are an AnswerOptions
        (paramdb.options: k, mode, where, method, merge, adapter_weight, short, max_new_tokens)."""
        return self.generate_batch([question], options, **fields)[0]

    def generate_batch(self, questions: list[str], options: AnswerOptions | None = None, /,
                       **fields: Any) -> list[Answer]:
        """Answer many questions in one batched generation, each with its own documents' adapters."""
        opts = answer_options(options, fields)
        questions = validate.question_list(questions)
        return answer.answer_batch(self._store, self._models, questions, opts)


def _document(row: dict) -> Document:
    return Document(text=row["text"], id=row["id"], metadata=row["metadata"],
                    adapter_kind=row["adapter_kind"])
