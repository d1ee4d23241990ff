"""The one insert pipeline (paramdb/engine/ingest.py): every executor gets the same validation, ids, dedup,
commits and report; only where parameterize runs differs. An executor here is a plain object that follows
the Executor contract, so the pipeline's handling of what executors report is tested without a cluster
(tests/test_ray_insert.py runs the real Ray one)."""
from __future__ import annotations

import pytest

from paramdb import InvalidInput
from paramdb.content_ids import content_id
from paramdb.engine import ingest


class _FailsOne:
    """Parameterizes locally, except one id, which it reports failed (as Ray reports a document that fails
    even alone)."""

    def __init__(self, models, bad_id: str):
        self.local, self.bad_id, self.seen = ingest.LocalExecutor(models), bad_id, []

    def made(self, batches, stats):
        stats["executor"] = "fails-one"
        for batch in batches:
            self.seen.append([d.id for d in batch])
            keep = [d for d in batch if d.id != self.bad_id]
            yield from self.local.made(iter([keep]), stats)
            if len(keep) < len(batch):
                yield ingest.Made([], failed=((self.bad_id, "RuntimeError: no"),))


def test_an_executors_failed_document_is_reported_and_not_stored_and_the_rest_commits(db):
    docs = [{"id": f"d{i}", "text": f"Lamp {i} burns {i} hours."} for i in range(4)]
    executor = _FailsOne(db._models, "d1")
    calls = []
    report = ingest.insert(db.handle.store, docs, executor, upsert=False, batch_size=2,
                           progress=lambda done, total: calls.append((done, total)))
    assert list(report) == ["d0", "d2", "d3"] and report.failed == [("d1", "RuntimeError: no")]
    assert report.stats == {"executor": "fails-one"} and sorted(d.id for d in db.list()) == ["d0", "d2", "d3"]
    assert calls[0] == (0, 4) and calls[-1] == (4, 4)              # a failed document counts as handled


def test_an_executor_is_never_handed_a_stored_document(db):
    db.insert(["Lamp 1 burns blue."], parameterize="later")
    executor = _FailsOne(db._models, "none")
    report = ingest.insert(db.handle.store, ["Lamp 1 burns blue.", "Lamp 2 burns red."], executor, upsert=False,
                           batch_size=8)
    assert executor.seen == [[content_id("Lamp 2 burns red.")]] and report.skipped == [content_id("Lamp 1 burns blue.")]


def test_progress_counts_skipped_documents_so_a_rerun_ends_at_its_total(db):
    docs = [f"Document {i} is about topic {i}." for i in range(3)]
    db.insert(docs[:2], parameterize="later")
    calls = []
    db.insert(docs, parameterize="later", progress=lambda done, total: calls.append((done, total)))
    assert calls == [(2, 3), (3, 3)]


def test_an_upsert_replaces_an_identical_row_instead_of_skipping_it(db):
    db.insert(["Lamp 1 burns blue."], parameterize="later")
    report = db.insert(["Lamp 1 burns blue."], upsert=True)
    assert list(report) == [content_id("Lamp 1 burns blue.")] and report.skipped == []
    assert db.get(content_id("Lamp 1 burns blue.")).adapter_kind == "trained"


@pytest.mark.parametrize("kwargs, message", [
    ({"executor": "spark"}, "unknown executor 'spark'; valid: local, ray"),
    ({"parameterize": "soon"}, "unknown parameterize 'soon'; valid: train, translate, later"),
    ({"executor": "ray", "parameterize": "later"}, "parameterize='later' runs locally"),
    ({"batch_size": 0}, "batch size must be at least 1, got 0"),
    ({"batch_size": 2.5}, "batch size must be an integer"),
])
def test_insert_arguments_are_refused_before_anything_is_read(db, kwargs, message):
    def never_read():
        raise AssertionError("the documents were read")
        yield

    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        db.insert(never_read(), **kwargs)
    assert len(db) == 0
