"""Insert's parameterize step on a Ray cluster: workers parameterize, this process (the single writer) commits.

Why this shape: parameterizing a document (augment, embed, train) costs seconds and needs only the base model;
committing it costs milliseconds and needs the store. So the store never leaves the driver. Each worker actor
(one per GPU, else one per CPU slot) loads the model and embedder once and runs the engine's own
``parameterize`` on the batches it is sent. Everything else is the one insert pipeline
(:mod:`paramdb.engine.ingest`): it validates, gives ids, skips what is stored, cuts batches and commits each
finished batch atomically. Batches are read only as workers free up (one in flight per worker), so memory is
bounded whatever the corpus.

Faults: Ray restarts a dead worker and reruns its batch (``max_restarts``, ``max_task_retries``). A batch that
still fails (its worker keeps dying, or parameterize raised) is split and each document retried alone; a
document that fails alone is reported in ``InsertReport.failed`` and skipped, and the run goes on. The store
only ever holds committed batches, so a killed driver leaves whole batches behind, and a rerun skips every id
already stored with the same text and metadata: it inserts only what is missing.

Results equal a local insert's (tests/test_ray_insert.py): the same code runs, batches are cut as a local insert
cuts them, each adapter is seeded by its document's id (``train.doc_seed``) and batched training equals training
alone, so the worker a batch lands on does not matter. (A document retried alone after its batch failed trains
identically; only its generated questions may differ, if padding in the batched generation moves an argmax.)

Ids, dedup and upserts are the pipeline's, so they are a local insert's: a document stored by either path is
skipped by the other, and an upsert replaces what it names (a pending row gets trained). A deferred insert
itself is refused on Ray (``validate.insert_args``): it only embeds, which a cluster cannot speed up.
"""
from __future__ import annotations

import os
import time
from collections import Counter, deque
from itertools import chain
from typing import Any, Iterator

import numpy as np

from ..engine.ingest import Made
from ..engine.models import ModelSource, Models
from ..engine.parameterize import parameterize
from ..errors import ExecutorError, ParamDBError
from ..types import Document

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
class RayExecutor:
    """The parameterize step of :func:`paramdb.engine.ingest.insert` on Ray workers; the pipeline around it
    (validation, ids, dedup, batches, commits, the report) is the local one. ``source``: where workers load
    the model and embedder from (paths, checked on the workers, where they must exist). ``address``: a
    running cluster ("auto", "HOST:PORT", "ray://HOST:10001"); None starts a local Ray instance, or uses the
    one this process already started. ``workers``: actors to start (default: one per GPU in the cluster, else
    one per CPU). Batches finish out of order, so the report lists ids in commit order."""

    def __init__(self, source: ModelSource, address: str | None = None, workers: int | None = None):
        self.source, self.address, self.workers = source, address, workers

    def made(self, batches: Iterator[list[Document]], stats: dict[str, Any]) -> Iterator[Made]:
        first = next(batches, None)
        if first is None:                     # nothing to do (e.g. a rerun of a finished run): no cluster
            return
        ray = _ray()
        started = _connect(ray, self.address)
        actors: list = []
        try:
            actors, info = _start_workers(ray, self.source, self.workers)
            stats["workers"], stats["nodes"] = len(actors), len({i["node"] for i in info})
            yield from _run(ray, actors, chain([first], batches), stats)
        finally:
            for actor in actors:
                ray.kill(actor)
            if started:
                ray.shutdown()


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


def _run(ray, actors: list, batches: Iterator[list[Document]], stats: dict[str, Any]) -> Iterator[Made]:
    """Keep every worker busy with one batch, yield results as they come, split failed batches."""
    t0 = time.perf_counter()
    idle, retry = list(actors), deque()        # retry: single documents whose batch failed
    pending: dict[Any, tuple[Any, list[Document]]] = {}
    per_worker: Counter[int] = Counter()
    n_batches = n_retried = n_restarted = n_docs = 0
    busy = 0.0                                 # seconds workers spent parameterizing committed batches
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
            vectors, adapters, worker = ray.get(ref)
        except ray.exceptions.RayError as exc:
            if len(batch) > 1:
                retry.extend(batch)
                n_retried += len(batch)
            else:
                yield Made([], failed=((batch[0].id, _reason(exc)),))
            continue
        yield Made(batch, vectors, adapters, "trained")
        n_docs += len(batch)
        per_worker[worker["pid"]] += len(batch)
        n_batches += 1
        n_restarted += bool(worker["restarted"])
        busy += worker["seconds"]
    seconds = time.perf_counter() - t0
    stats.update({"batches": n_batches, "docs_retried": n_retried,
                  "batches_on_restarted_workers": n_restarted, "seconds": round(seconds, 3),
                  "worker_seconds": round(busy, 3),
                  "docs_per_s": round(n_docs / seconds, 3) if seconds > 0 else 0.0,
                  "docs_per_worker_process": dict(per_worker)})


def _reason(exc: BaseException) -> str:
    """One line: the worker's own exception when it raised one, else what happened to the worker."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}".splitlines()[0]
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else 'worker failed'}"
