"""Ctrl-C during insert: one line saying what was committed, exit 130, and a rerun that really stores the rest."""
from __future__ import annotations

import json
import os
import signal
import time

import pytest

from paramdb import InsertInterrupted, ParamDB
from paramdb.engine import ingest
from test_cli import CLI_TRAINING, opened, run  # noqa: F401  (opened: autouse fixture giving the CLI the tiny model)

TEXTS = [f"Fact {i}: the lighthouse of Orm{i} burns green oil." for i in range(6)]


@pytest.fixture
def empty_store(tmp_path, tiny_lm, embedder):
    path = tmp_path / "store"
    ParamDB.open(path, create=True, model=tiny_lm, embedder=embedder, training=CLI_TRAINING).close()
    return str(path)


@pytest.fixture
def docs_file(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))   # id-less: ids come from text
    return str(path)


@pytest.fixture
def sigint_on_batch(monkeypatch):
    """Send this process a real SIGINT while it parameterizes the given (1-based) batch (0: never); returns
    the documents parameterized since it was armed."""
    real = ingest.parameterize
    state = {"at": 0, "batches": 0, "docs": []}

    def parameterize(models, batch):
        state["batches"] += 1
        state["docs"] += batch
        if state["batches"] == state["at"]:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)        # a real batch trains for seconds: the signal lands before the batch ends
        return real(models, batch)
    monkeypatch.setattr(ingest, "parameterize", parameterize)

    def arm(n: int) -> list:
        state.update(at=n, batches=0, docs=[])
        return state["docs"]
    return arm


def stored(path) -> list[str]:
    with ParamDB.open(path) as db:
        return [d.text for d in db.list()]


def test_ctrl_c_during_insert_says_how_many_were_committed_and_exits_130(empty_store, docs_file, sigint_on_batch):
    sigint_on_batch(2)
    result = run("insert", empty_store, docs_file, "--batch-size", 2)
    assert result.exit_code == 130, result.output
    assert result.stderr.strip().splitlines()[-1] == \
        "interrupted: 2 documents committed; rerun the same command to insert the rest"
    assert "Aborted" not in result.output
    assert stored(empty_store) == TEXTS[:2]


def test_rerunning_the_interrupted_command_stores_only_the_rest(empty_store, docs_file, sigint_on_batch):
    sigint_on_batch(2)
    assert run("insert", empty_store, docs_file, "--batch-size", 2).exit_code == 130
    trained = sigint_on_batch(0)
    result = run("insert", empty_store, docs_file, "--batch-size", 2)
    assert result.exit_code == 0, result.output
    assert "inserted 4 documents (2 already stored)" in result.stdout
    assert [d.text for d in trained] == TEXTS[2:]
    assert sorted(stored(empty_store)) == sorted(TEXTS)


def test_the_api_raises_insert_interrupted_with_the_committed_ids(db, sigint_on_batch):
    sigint_on_batch(3)
    docs = [{"id": f"d{i}", "text": t} for i, t in enumerate(TEXTS)]
    with pytest.raises(InsertInterrupted) as err:
        db.insert(docs, batch_size=2)
    assert err.value.committed == ["d0", "d1", "d2", "d3"]
    assert isinstance(err.value, KeyboardInterrupt)


def test_a_local_insert_skips_a_document_stored_with_the_same_text_and_metadata(db):
    db.insert([{"id": "a", "text": "Alpha.", "metadata": {"k": 1}}])
    report = db.insert([{"id": "a", "text": "Alpha.", "metadata": {"k": 1}}, {"id": "b", "text": "Beta."}])
    assert list(report) == ["b"] and report.skipped == ["a"]
