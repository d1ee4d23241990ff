"""The one thread that runs the model, and the cross-request batching of answers.

The LoRA side path is model-global state (knowledge/lora.py: hooks on the model, factors set per
generation or training step), so two threads must never run the model at once. Every piece of model work the
server does (answering, querying, inserting, reading the store) is therefore a job on one queue, run by one
worker thread; the asyncio event loop only accepts requests and awaits the jobs' futures.

Batching: when the worker picks up an answer job it keeps collecting answer jobs for ``window`` seconds (or
until ``max_batch`` are in hand), then answers them with ``generate_batch``. While it generates, new requests
queue up, so under load the next batch is gathered at once. ``generate_batch`` takes one AnswerOptions
(mode, k, filter, merge, weight, length) for all its questions, so the gathered jobs are grouped by equal
options and each group is one batched call (each question still gets its own merged top-k adapters). If a
group's call fails on bad input (one question too long), each of its questions is answered alone, so only the bad one
gets the error.

The queue is bounded (``QueueFull``: the route answers 429); a job whose request timed out while still
queued is cancelled and skipped.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable

from paramdb.errors import ParamDBError
from paramdb.options import AnswerOptions

from .errors import HTTPError

log = logging.getLogger("paramdb.server")


class QueueFull(HTTPError):
    def __init__(self, size: int):
        super().__init__(429, f"the server is busy: {size} requests are already waiting for the model; retry "
                              "later", "rate_limit_error", "queue_full")


@dataclass
class Answered:
    """An answer with its token counts, taken on the model thread: a fast tokenizer must not be used by two
    threads at once (generation changes its padding side)."""

    answer: Any                 # paramdb.types.Answer
    prompt_tokens: int          # the question
    completion_tokens: int      # the model's whole generation


def group_key(options: AnswerOptions) -> str:
    """Requests with equal options share one ``generate_batch`` call; the filter is a dict, so the key is the
    options as canonical JSON."""
    return json.dumps(options.kwargs(), sort_keys=True)


def count_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0


@dataclass
class _Answer:
    question: str
    options: AnswerOptions
    future: Future


@dataclass
class _Call:
    fn: Callable[[], Any]
    future: Future


_STOP = object()


class ModelWorker:
    """Owns all model work for one open ParamDB. ``submit``/``submit_answer`` return concurrent futures."""

    def __init__(self, db, *, window_s: float = 0.005, max_batch: int = 16, max_queue: int = 64):
        self.db, self.window_s, self.max_batch, self.max_queue = db, window_s, max_batch, max_queue
        self._q: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = False
        # figures GET /stats shows (and tests read): how many batched calls, and of what size
        self.batches = 0
        self.answered = 0
        self.largest_batch = 0
        self.jobs = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="paramdb-model", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the job in hand, refuse what is still queued (503), and join the thread."""
        with self._lock:
            self._stopping = True
            self._q.put(_STOP)
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def queued(self) -> int:
        """Jobs waiting whose request still wants them (a timed-out one is cancelled and counts no more)."""
        with self._q.mutex:
            return sum(1 for j in self._q.queue if j is not _STOP and not j.future.cancelled())

    def _prune(self) -> None:
        """Drop cancelled jobs from the queue, so requests that gave up do not keep it full."""
        with self._q.mutex:
            live = [j for j in self._q.queue if j is _STOP or not j.future.cancelled()]
            self._q.queue.clear()
            self._q.queue.extend(live)

    def stats(self) -> dict[str, Any]:
        return {"batches": self.batches, "answered": self.answered, "largest_batch": self.largest_batch,
                "jobs": self.jobs, "queued": self.queued(), "max_batch": self.max_batch,
                "max_queue": self.max_queue, "batch_window_ms": self.window_s * 1000}

    # ------------------------------------------------------------------ submitting (any thread)
    def submit_answer(self, question: str, options: AnswerOptions) -> Future:
        return self._put(_Answer(question, options, Future()))

    def submit(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn`` on the model thread (store reads and writes, queries)."""
        return self._put(_Call(fn, Future()))

    def _put(self, job):
        with self._lock:
            if self._stopping:
                raise HTTPError(503, "the server is shutting down", "server_error", "shutting_down")
            if self._q.qsize() >= self.max_queue:
                self._prune()
            if self._q.qsize() >= self.max_queue:
                raise QueueFull(self.max_queue)
            self._q.put(job)
        return job.future

    # ------------------------------------------------------------------ the model thread
    def _run(self) -> None:
        while True:
            job = self._q.get()
            if job is _STOP:
                break
            if isinstance(job, _Call):
                self._call(job)
                continue
            batch, others, stop = self._gather(job)
            self._answer(batch)
            for other in others:
                self._call(other)
            if stop:
                break
        self._refuse_rest()

    def _gather(self, first: _Answer) -> tuple[list[_Answer], list[_Call], bool]:
        """Answer jobs arriving within the window (at most max_batch); calls met meanwhile run after them."""
        batch, others = [first], []
        deadline = time.monotonic() + self.window_s
        while len(batch) < self.max_batch:
            try:
                remaining = deadline - time.monotonic()
                job = self._q.get(timeout=remaining) if remaining > 0 else self._q.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                return batch, others, True
            (batch if isinstance(job, _Answer) else others).append(job)
        return batch, others, False

    def _call(self, job: _Call) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        self.jobs += 1
        try:
            job.future.set_result(job.fn())
        except BaseException as exc:     # handed to the request, which maps it (errors.py)
            job.future.set_exception(exc)

    def _answer(self, batch: list[_Answer]) -> None:
        groups: OrderedDict[str, list[_Answer]] = OrderedDict()
        for job in batch:
            if job.future.set_running_or_notify_cancel():      # False: its request gave up while queued
                groups.setdefault(group_key(job.options), []).append(job)
        for jobs in groups.values():
            options = jobs[0].options
            try:
                answers = self._generate([j.question for j in jobs], options)
            except ParamDBError as exc:
                if len(jobs) == 1:
                    jobs[0].future.set_exception(exc)
                    continue
                for job in jobs:                  # one bad question must not fail the others
                    try:
                        job.future.set_result(self._counted(job.question,
                                                            self._generate([job.question], options)[0]))
                    except BaseException as alone:
                        job.future.set_exception(alone)
                continue
            except BaseException as exc:
                for job in jobs:
                    job.future.set_exception(exc)
                continue
            for job, answer in zip(jobs, answers):
                job.future.set_result(self._counted(job.question, answer))

    def _counted(self, question: str, answer) -> Answered:
        tok = self.db.handle.models.lm.tokenizer
        return Answered(answer, count_tokens(tok, question), count_tokens(tok, answer.generation or answer.text))

    def _generate(self, questions: list[str], options: AnswerOptions):
        answers = self.db.generate_batch(questions, options)
        self.batches += 1
        self.answered += len(questions)
        self.largest_batch = max(self.largest_batch, len(questions))
        return answers

    def _refuse_rest(self) -> None:
        while True:
            try:
                job = self._q.get_nowait()
            except queue.Empty:
                return
            if job is not _STOP and job.future.set_running_or_notify_cancel():
                job.future.set_exception(HTTPError(503, "the server is shutting down", "server_error",
                                                   "shutting_down"))
