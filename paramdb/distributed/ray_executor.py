"""Insert on a Ray cluster: workers parameterize, this process (the single writer) commits.

Why this shape: parameterizing a document (augment, embed, train) costs seconds and needs only the base model;
committing it costs milliseconds and needs the store. So the store never leaves the driver. Each worker actor
(one per GPU, else one per CPU slot) loads the model and embedder once and runs the engine's own
``parameterize`` on the batches it is sent; the driver validates, skips what is already stored, keeps one batch per worker in
flight (backpressure: input is read only as workers free up, so memory is bounded whatever the corpus) and
writes each finished batch atomically with the engine's ``commit_batch``.

Faults: Ray restarts a dead worker and reruns its batch (``max_restarts``, ``max_task_retries``). A batch that
still fails (its worker keeps dying, or parameterize raised) is split and each document retried alone; a
document that fails alone is reported in ``InsertReport.failed`` and skipped, and the run goes on. The store
only ever holds committed batches, so a killed driver leaves whole batches behind, and a rerun skips every id
already stored with the same text and metadata: it inserts only what is missing.

Results equal a local insert's (tests/test_ray_insert.py): the same code runs, batches are cut as a local insert
cuts them, each adapter is seeded by its document's id (``train.doc_seed``) and batched training equals training
alone, so the worker a batch lands on does not matter. (A document retried alone after its batch failed trains
identically; only its generated questions may differ, if padding in the batched generation moves an argmax.)

Ids: a document without one gets the id of its text (documents.with_content_ids), exactly as a local insert
and the CLI give it, so a document stored by either is skipped by the other. Rows stored as pending (a local
``insert(parameterize="later")``) are skipped like any stored row, and an upsert here trains them. A deferred
insert itself is refused on Ray (``ParamDB.insert``): it only embeds, which a cluster cannot speed up.
"""
from __future__ import annotations

import os
import time
from collections import Counter, deque
from itertools import chain, islice
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from .. import documents
from ..engine.commit import commit_batch
from ..engine.models import ModelSource, Models
from ..engine.parameterize import parameterize
from ..engine.store import Store
from ..errors import DuplicateId, ExecutorError, InsertInterrupted, ParamDBError
from ..resume import unstored
from ..storage.meta import PENDING
from ..types import Document, InsertReport

if TYPE_CHECKING:
    from ..engine.ingest import Progress

# Ray reruns a batch whose worker died this many times (on the restarted worker) before the driver splits it.
TASK_RETRIES = 2


def _ray():
    """Ray, imported only here: it is an optional extra and takes seconds to import."""
    try:
        import ray
    except ImportError:
        raise ExecutorError("executor='ray' needs Ray: pip install 'paramdb[ray]'") from None
    return ray


# ------------------------------------------------------------------------------------------ worker side
class ParameterizeWorker:
    """A Ray actor: holds the base model once and turns batches of documents into vectors and adapters.

    Loading happens on first use, not in ``__init__``, so a load error (missing model on that node, wrong
    weights) comes back as that error from :meth:`ready` instead of killing the actor, and a restarted actor
    (after its process died) reloads when it is next used.
    """

    def __init__(self, source: ModelSource, threads: int):
        self._source, self._threads = source, threads
        self._models: Models | None = None

    def _loaded(self) -> Models:
        """The engine's own model holder (loading, fingerprint and width checks), as a local insert uses."""
        if self._models is None:
            import torch

            torch.set_num_threads(self._threads)     # one CPU slot each: more threads only contend
            models = Models.from_source(self._source, label="(ray worker)")
            _ = (models.lm, models.embedder)          # load and check both now, not mid-batch
            self._models = models
        return self._models

    def ready(self) -> dict[str, Any]:
        import ray

        p = self._loaded()
        return {"pid": os.getpid(), "node": ray.util.get_node_ip_address(), "device": str(p.lm.device)}

    def parameterize(self, batch: list[Document]) -> tuple[np.ndarray, list[dict[str, np.ndarray]], dict]:
        """(embeddings, float32 adapters, stats) for a batch: exactly the engine's ``parameterize``."""
        import ray

        t0 = time.perf_counter()
        vectors, adapters = parameterize(self._loaded(), batch)
        return vectors, adapters, {"pid": os.getpid(), "docs": len(batch), "seconds": time.perf_counter() - t0,
                                   "restarted": ray.get_runtime_context().was_current_actor_reconstructed}


# ------------------------------------------------------------------------------------------ driver side
def ray_insert(store: Store, source: ModelSource, docs: Iterable[Any], *, upsert: bool = False, batch_size: int = 8,
               progress: "Progress | None" = None, address: str | None = None,
               workers: int | None = None) -> InsertReport:
    """``db.insert(docs, executor="ray", ...)``: see the module docstring. ``source``: where workers load
    the model and embedder from (paths, checked on the workers, where they must exist). ``address``: a running cluster
    ("auto", "HOST:PORT", "ray://HOST:10001"); None starts a local Ray instance, or uses the one this process
    already started. ``workers``: actors to start (default: one per GPU in the cluster, else one per CPU).
    The report lists stored ids in commit order (batches finish out of order)."""
    ray = _ray()
    report = InsertReport()
    if isinstance(docs, Sequence):
        # A list is validated whole, and checked against the store, before the cluster is even contacted.
        checked = _unstored(store, documents.coerce_all(documents.with_content_ids(
            (f"document {i}", d) for i, d in enumerate(docs, 1))), upsert, report.skipped)
        batches: Iterator[list[Document]] = (checked[i:i + batch_size] for i in range(0, len(checked), batch_size))
        total = len(checked) + len(report.skipped)
    else:
        batches, total = _streamed(store, docs, batch_size, upsert, report.skipped), -1
    first = next(batches, None)
    if first is None:                          # nothing to do (e.g. a rerun of a finished run): no cluster
        if progress:
            progress(len(report.skipped), total)
        return report
    batches = chain([first], batches)
    started = _connect(ray, address)
    actors: list = []
    try:
        actors, info = _start_workers(ray, source, workers)
        _run(ray, store, actors, batches, upsert, total, progress, report)
        report.stats["workers"] = len(actors)
        report.stats["nodes"] = len({i["node"] for i in info})
    except KeyboardInterrupt:
        raise InsertInterrupted(list(report.ids)) from None
    finally:
        for actor in actors:
            ray.kill(actor)
        if started:
            ray.shutdown()
        store.indexes.save()
    return report


def _connect(ray, address: str | None) -> bool:
    """Join the cluster at ``address`` (or start a local one); True when this call started Ray."""
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"at {address!r}" if address else "locally"
        raise ExecutorError(f"cannot start or reach a Ray cluster {where}: {exc}".splitlines()[0]) from None
    return True


def _start_workers(ray, source: ModelSource, workers: int | None) -> tuple[list, list[dict]]:
    """One actor per GPU (else per CPU) slot, each with the model loaded; a load error is raised as itself."""
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
    slots = gpus or cpus
    n = workers or slots
    if n < 1 or n > slots:
        raise ExecutorError(f"asked for {n} Ray workers; the cluster has {slots} "
                            f"{'GPU' if gpus else 'CPU'} slot{'s' * (slots != 1)}")
    worker = ray.remote(ParameterizeWorker).options(
        num_cpus=1, num_gpus=1 if gpus else 0, max_restarts=-1, max_task_retries=TASK_RETRIES)
    actors = [worker.remote(source, 1) for _ in range(n)]
    try:
        info = ray.get([a.ready.remote() for a in actors])
    except ray.exceptions.RayError as exc:
        for a in actors:
            ray.kill(a)
        cause = getattr(exc, "cause", None)
        if isinstance(cause, ParamDBError):
            raise cause from None
        raise ExecutorError(f"a Ray worker could not load the model: {_reason(exc)}") from None
    return actors, info


def _run(ray, store: Store, actors: list, batches: Iterator[list[Document]], upsert: bool, total: int,
         progress: "Progress | None", report: InsertReport) -> None:
    """Keep every worker busy with one batch, commit results as they come, split failed batches."""
    t0 = time.perf_counter()
    idle, retry = list(actors), deque()        # retry: single documents whose batch failed
    pending: dict[Any, tuple[Any, list[Document]]] = {}
    per_worker: Counter[int] = Counter()
    n_batches = n_retried = n_restarted = 0
    busy = 0.0                                 # seconds workers spent parameterizing committed batches

    def tell() -> None:
        if progress:
            progress(len(report.ids) + len(report.skipped) + len(report.failed), total)

    tell()
    while True:
        while idle:
            batch = [retry.popleft()] if retry else next(batches, None)
            if batch is None:
                break
            actor = idle.pop()
            pending[actor.parameterize.remote(batch)] = (actor, batch)
        if not pending:
            break
        [ref], _ = ray.wait(list(pending), num_returns=1)
        actor, batch = pending.pop(ref)
        idle.append(actor)
        try:
            vectors, adapters, stats = ray.get(ref)
        except ray.exceptions.RayError as exc:
            if len(batch) > 1:
                retry.extend(batch)
                n_retried += len(batch)
            else:
                report.failed.append((batch[0].id, _reason(exc)))
                tell()
            continue
        commit_batch(store, batch, vectors, adapters, upsert)
        report.ids.extend(d.id for d in batch)
        per_worker[stats["pid"]] += len(batch)
        n_batches += 1
        n_restarted += bool(stats["restarted"])
        busy += stats["seconds"]
        tell()
    seconds = time.perf_counter() - t0
    report.stats.update({"batches": n_batches, "docs_retried": n_retried,
                         "batches_on_restarted_workers": n_restarted, "seconds": round(seconds, 3),
                         "worker_seconds": round(busy, 3),
                         "docs_per_s": round(len(report) / seconds, 3) if seconds > 0 else 0.0,
                         "docs_per_worker_process": dict(per_worker)})


def _unstored(store: Store, batch: list[Document], upsert: bool, skipped: list[str]) -> list[Document]:
    """What is left to parameterize. A Ray upsert skips rows stored with the same content (a rerun resumes),
    except pending ones: they have no adapter yet, and training them is what the upsert is for."""
    same: list[str] = []
    todo = unstored(store.meta, batch, upsert, same)
    if upsert and same:
        pending = {r["id"] for r in store.meta.get(same) if r["adapter_kind"] == PENDING}
        keep = {d.id for d in todo} | pending
        todo = [d for d in batch if d.id in keep]
        same = [i for i in same if i not in pending]
    skipped.extend(same)
    return todo


def _streamed(store: Store, docs: Iterable[Any], batch_size: int, upsert: bool,
              skipped: list[str]) -> Iterator[list[Document]]:
    """Read, validate and check ``batch_size`` documents at a time, as local streamed insert does."""
    numbered = documents.with_content_ids((f"document {i}", d) for i, d in enumerate(docs, 1))
    seen: set[str] = set()
    while chunk := list(islice(numbered, batch_size)):
        batch = documents.coerce_all(chunk)
        repeat = next((d.id for d in batch if d.id in seen), None)
        if repeat is not None:
            raise DuplicateId(repeat)
        seen.update(d.id for d in batch)
        batch = _unstored(store, batch, upsert, skipped)
        if batch:
            yield batch


def _reason(exc: BaseException) -> str:
    """One line: the worker's own exception when it raised one, else what happened to the worker."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}".splitlines()[0]
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else 'worker failed'}"
