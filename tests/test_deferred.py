"""Deferred parameterization: ``insert(parameterize="later")`` / ``insert --defer`` stores pending rows (an
embedding, no adapter), answering reads their passages, ``refine`` trains them, and every operator command
handles them. Tiny random model: the answers' words mean nothing, their prompts and adapters do."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import FAST_TRAINING
from paramdb import ParamDB
from paramdb.cli import commands, main
from paramdb.content_ids import content_id
from paramdb.engine.adapters import NoAdapterYet
from paramdb.errors import InvalidInput, ReadOnlyStore
from paramdb.ops.compact import compact
from paramdb.ops.copy import copy_store
from paramdb.ops.migrate import migrate
from paramdb.storage.codec import decode_tensors
from paramdb.storage.meta import MetaStore
from paramdb.engine.adapters import factors_for_ids
from paramdb.ops.backup import backup, restore, verify
from paramdb.ops.check import check
from paramdb.ops.distill_store import distill
from paramdb.ops.refine import refine
from paramdb.interop.peft_export import export_peft
from paramdb.interop.peft_import import import_peft

DOCS = [{"id": f"d{i}", "text": f"Person {i} lives in town {i * 7}. Person {i} bakes bread there.",
         "metadata": {"n": i}} for i in range(6)]
TESTS = Path(__file__).resolve().parent


def kinds(db) -> dict:
    return db.stats()["adapters"]


def blob_keys(db) -> dict[str, str]:
    return {r["id"]: r["blob_key"] for r in db.handle.store.meta.get([d.id for d in db.list()])}


@pytest.fixture
def mixed(db):
    """d0-d2 trained, d3-d5 pending."""
    db.insert(DOCS[:3])
    db.insert(DOCS[3:], parameterize="later")
    return db


def contents(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and p.name not in ("lock.mdb", "writer.lock") and not p.name.endswith(("-shm", "-wal"))}


# ------------------------------------------------------------------------------------------ insert
def test_a_deferred_insert_stores_rows_with_an_embedding_and_no_adapter(db):
    report = db.insert(DOCS, parameterize="later")
    assert list(report) == [d["id"] for d in DOCS]
    assert kinds(db) == {"trained": 0, "translated": 0, "imported": 0, "pending": 6}
    assert db.get("d1").adapter_kind == "pending"
    assert {d.adapter_kind for d in db.list()} == {"pending"}
    assert db.query("town 7 bread", k=1)[0].adapter_kind == "pending"
    for key in blob_keys(db).values():
        assert db.handle.store.blobs.get_adapter(key) is None and db.handle.store.blobs.get_embedding(key) is not None
    assert db.handle.store.blobs.count("adapters") == 0
    assert check(db.handle.store, db.handle.models).ok and check(db.handle.store, db.handle.models).pending == 6


def test_the_cli_shows_pending_rows_in_get_ls_and_stats(mixed, monkeypatch, tiny_lm, embedder):
    real = commands.open_db
    monkeypatch.setattr(commands, "open_db",
                        lambda p, create=False, **kw: real(p, create, **{**kw, "model": tiny_lm, "embedder": embedder}))
    path = str(mixed.path)
    mixed.close()
    run = CliRunner().invoke
    assert json.loads(run(main, ["get", path, "d4", "--json"]).output)["adapter"] == "pending"
    assert "adapter: pending" in run(main, ["get", path, "d4"]).output
    assert [line.split()[1] for line in run(main, ["ls", path]).output.splitlines()] == ["trained"] * 3 + ["pending"] * 3
    assert json.loads(run(main, ["stats", path, "--json"]).output)["adapters"]["pending"] == 3
    hits = json.loads(run(main, ["query", path, "town 21 bread", "-k", "1", "--json"]).output)
    assert hits[0]["id"] == "d3" and hits[0]["adapter"] == "pending"


def test_insert_defer_on_the_cli_stores_pending_rows(db, tmp_path, monkeypatch, tiny_lm, embedder):
    real = commands.open_db
    monkeypatch.setattr(commands, "open_db",
                        lambda p, create=False, **kw: real(p, create, **{**kw, "model": tiny_lm, "embedder": embedder}))
    f = tmp_path / "docs.jsonl"
    f.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    path = str(db.path)
    db.close()
    r = CliRunner().invoke(main, ["insert", path, str(f), "--defer"])
    assert r.exit_code == 0, r.output
    with ParamDB.open(path, model=tiny_lm, embedder=embedder) as again:
        assert kinds(again)["pending"] == 6


# ------------------------------------------------------------------------------------------ answering
def test_pending_rows_are_answered_from_their_passage_and_the_notes_name_them(db, tiny_lm, embedder, tmp_path):
    db.insert(DOCS, parameterize="later")
    q = "Where does person 2 live?"
    prag = db.generate(q, k=1, mode="prag", short=False)
    icl = db.generate(q, k=1, mode="icl", short=False)
    assert prag.hits[0].id == "d2" and prag.hits[0].adapter_kind == "pending"
    assert prag.generation == icl.generation          # the same prompt: the passage, no adapter
    assert any("not yet parameterized" in n and "d2" in n for n in prag.notes)
    assert not any("not yet parameterized" in n for n in icl.notes)
    combine = db.generate(q, k=2, mode="combine", short=False)
    assert any("d2" in n for n in combine.notes if "not yet parameterized" in n)
    with ParamDB.open(tmp_path / "trained", create=True, model=tiny_lm, embedder=embedder,
                      training=FAST_TRAINING) as trained:      # the same rows trained: their adapters speak
        trained.insert(DOCS)
        answered = trained.generate(q, k=1, mode="prag", short=False)
        assert not any("not yet parameterized" in n for n in answered.notes)


def test_one_batch_answers_questions_with_different_mixes_as_each_alone(mixed):
    questions = ["Where does person 1 live?", "Where does person 4 live?", "Who bakes bread in town 35?"]
    batched = mixed.generate_batch(questions, k=2, mode="prag", short=False)
    for q, got in zip(questions, batched):
        alone = mixed.generate(q, k=2, mode="prag", short=False)
        assert [h.id for h in got.hits] == [h.id for h in alone.hits]
        assert got.generation == alone.generation and got.notes == alone.notes
        pending = [h.id for h in got.hits if h.adapter_kind == "pending"]
        assert bool(pending) == any("not yet parameterized" in n for n in got.notes)
        assert all(i in " ".join(got.notes) for i in pending)
    assert any(h.adapter_kind == "pending" for a in batched for h in a.hits)
    assert any(h.adapter_kind == "trained" for a in batched for h in a.hits)


# ------------------------------------------------------------------------------------------ refine
def test_refine_turns_pending_rows_into_the_trained_rows_an_insert_makes(mixed, tiny_lm, embedder, tmp_path):
    before = blob_keys(mixed)
    result = refine(mixed.handle.store, mixed.handle.models, batch_size=2)
    assert result.refined == 3 and result.remaining == 0 and result.pending == 0
    assert kinds(mixed) == {"trained": 6, "translated": 0, "imported": 0, "pending": 0}
    after = blob_keys(mixed)
    assert all(after[i] == before[i] for i in ("d0", "d1", "d2"))
    assert all(after[i] != before[i] for i in ("d3", "d4", "d5"))     # a new key, swapped in: never in place
    assert not set(before[i] for i in ("d3", "d4", "d5")) & set(mixed.handle.store.blobs.keys("embeddings"))
    assert check(mixed.handle.store, mixed.handle.models).ok and not [f for f in check(mixed.handle.store, mixed.handle.models).findings if f.kind == "orphan-blobs"]
    with ParamDB.open(tmp_path / "ref", create=True, model=tiny_lm, embedder=embedder, training=FAST_TRAINING) as ref:
        ref.insert(DOCS[3:], batch_size=2)
        theirs = blob_keys(ref)
        for i in ("d3", "d4", "d5"):           # each adapter is seeded by its id: refine trains what insert does
            a = decode_tensors(mixed.handle.store.blobs.get_adapter(after[i]))
            b = decode_tensors(ref.handle.store.blobs.get_adapter(theirs[i]))
            for name in a:
                np.testing.assert_allclose(a[name], b[name], rtol=1e-3, atol=1e-5)
    answered = mixed.generate("Where does person 4 live?", k=1, mode="prag")
    assert not any("not yet parameterized" in n for n in answered.notes)


def test_refine_leaves_a_pending_row_changed_meanwhile_as_it_is(mixed, monkeypatch):
    from paramdb.ops import refine as refine_mod

    real = refine_mod.train_adapters

    def train_then_upsert(lm, samples, ids, settings):
        out = real(lm, samples, ids, settings)
        if "d4" in ids:
            mixed.upsert({"id": "d4", "text": "Person 4 moved to town 99.", "metadata": {}}, parameterize="later")
        return out

    monkeypatch.setattr(refine_mod, "train_adapters", train_then_upsert)
    result = refine(mixed.handle.store, mixed.handle.models, batch_size=3, limit=3)
    assert result.skipped == ["d4"] and result.refined == 2
    assert mixed.get("d4").text == "Person 4 moved to town 99." and mixed.get("d4").adapter_kind == "pending"
    assert check(mixed.handle.store, mixed.handle.models).ok


def test_refine_trains_pending_rows_before_translated_ones(db):
    db.insert(DOCS[:4])
    distill(db.handle.store, db.handle.models, epochs=1)
    db.insert(DOCS[4:], parameterize="translate")
    db.insert([{"id": "late", "text": "Person 9 lives in town 63."}], parameterize="later")
    result = refine(db.handle.store, db.handle.models, batch_size=1, limit=1)
    assert result.refined == 1 and db.get("late").adapter_kind == "trained"
    assert (result.pending, result.translated) == (0, 2)
    refine(db.handle.store, db.handle.models)
    assert kinds(db) == {"trained": 7, "translated": 0, "imported": 0, "pending": 0}


def test_refine_watch_trains_rows_that_arrive_while_it_runs(mixed):
    import threading

    stop = threading.Event()
    seen = []

    def on_batch(result):
        seen.append(result.refined)
        if result.refined == 3 and not any(d.id == "new" for d in mixed.list()):
            mixed.insert([{"id": "new", "text": "Person 8 lives in town 56."}], parameterize="later")
        if result.refined == 4:
            stop.set()

    result = refine(mixed.handle.store, mixed.handle.models, batch_size=3, watch=True, interval=0.05, stop=stop, on_batch=on_batch)
    assert result.refined == 4 and not result.interrupted and seen == [3, 4]
    assert kinds(mixed)["pending"] == 0 and mixed.get("new").adapter_kind == "trained"


# ------------------------------------------------------------------------------------------ kills and signals
WATCHER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    import torch; torch.set_num_threads(1)
    from conftest import make_tiny_lm
    from paramdb.cli import commands, main
    real = commands.open_db
    lm = make_tiny_lm()
    commands.open_db = lambda p, create=False, **kw: real(p, create, **{{**kw, "model": lm}})
    print("ready", flush=True)
    main(["refine", {store!r}, "--watch", "--batch-size", "1", "--interval", "0.05"], standalone_mode=True)
""")


def _watcher(tmp_path, store) -> subprocess.Popen:
    script = tmp_path / "watch.py"
    script.write_text(WATCHER.format(tests=str(TESTS), store=str(store)))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


@pytest.fixture
def pending_store(tmp_path, tiny_lm, embedder):
    path = tmp_path / "store"
    with ParamDB.open(path, create=True, model=tiny_lm, embedder=embedder, training=FAST_TRAINING) as db:
        db.insert(DOCS, parameterize="later")
    return path


def _assert_sound(path, tiny_lm, embedder) -> dict:
    with ParamDB.open(path, model=tiny_lm, embedder=embedder) as db:
        assert {d.id: d.text for d in db.list()} == {d["id"]: d["text"] for d in DOCS}
        trained = [d.id for d in db.list() if d.adapter_kind == "trained"]
        assert len(factors_for_ids(db.handle.store, db.handle.models.lm, trained)) == len(trained)          # every trained row's adapter reads
        for key in blob_keys(db).values():
            assert db.handle.store.blobs.get_embedding(key) is not None
        assert check(db.handle.store, db.handle.models).ok, check(db.handle.store, db.handle.models).findings
        return kinds(db)


@pytest.mark.parametrize("delay", [0.3, 1.0, 2.5])
def test_a_kill_during_refine_watch_loses_nothing_and_a_rerun_finishes(pending_store, tmp_path, tiny_lm, embedder,
                                                                       delay):
    proc = _watcher(tmp_path, pending_store)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    got = _assert_sound(pending_store, tiny_lm, embedder)
    assert got["pending"] + got["trained"] == 6
    with ParamDB.open(pending_store, model=tiny_lm, embedder=embedder) as db:
        refine(db.handle.store, db.handle.models, batch_size=4)
        assert kinds(db) == {"trained": 6, "translated": 0, "imported": 0, "pending": 0}
        check(db.handle.store, db.handle.models, repair=True)             # orphans the kill left behind
        assert not [f for f in check(db.handle.store, db.handle.models).findings if f.severity == "error"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_refine_watch_stops_on_a_signal_with_exit_0_and_a_summary(pending_store, tmp_path, tiny_lm, embedder, sig):
    proc = _watcher(tmp_path, pending_store)
    meta = MetaStore(f"sqlite:///{pending_store / 'meta.sqlite'}", readonly=True)
    deadline = time.monotonic() + 120
    while meta.adapter_kinds()["trained"] < 1:      # a batch committed: the signal handlers are in place
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.05)
    meta.close()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("refined ") and "still pending" in summary
    assert _assert_sound(pending_store, tiny_lm, embedder)["trained"] == int(summary.split()[1])


# ------------------------------------------------------------------------------------------ operator commands
def test_backup_verify_and_restore_keep_pending_rows(mixed, tmp_path, tiny_lm, embedder):
    archive = tmp_path / "b.tar"
    backup(mixed.handle.store, archive)
    assert verify(archive) == [] and verify(mixed.path) == []
    restore(archive, tmp_path / "restored")
    with ParamDB.open(tmp_path / "restored", model=tiny_lm, embedder=embedder) as back:
        assert kinds(back) == kinds(mixed) and blob_keys(back) == blob_keys(mixed)
        refine(back.handle.store, back.handle.models)
        assert kinds(back)["pending"] == 0


def test_check_repair_does_not_treat_a_pending_row_as_damaged(mixed):
    keys = blob_keys(mixed)
    report = check(mixed.handle.store, mixed.handle.models, repair=True)
    assert report.ok and report.pending == 3 and report.adapters == 3
    assert not [f for f in report.findings if f.subject in ("d3", "d4", "d5")]
    assert blob_keys(mixed) == keys and kinds(mixed)["pending"] == 3


def test_check_repair_reembeds_a_pending_row_whose_embedding_is_lost_and_keeps_it_pending(mixed):
    key = blob_keys(mixed)["d4"]
    with mixed.handle.store.blobs._s.env.begin(write=True) as txn:      # lose the embedding, as damage would
        txn.delete(key.encode(), db=mixed.handle.store.blobs._s.dbs["embeddings"])
    report = check(mixed.handle.store, mixed.handle.models)
    assert not report.ok and [f.kind for f in report.findings if f.subject == "d4"] == ["embedding-missing"]
    assert check(mixed.handle.store, mixed.handle.models, repair=True).ok
    assert mixed.get("d4").adapter_kind == "pending" and check(mixed.handle.store, mixed.handle.models).ok
    assert mixed.query("town 28 bread", k=1)[0].id == "d4"


def test_copy_keeps_pending_rows(mixed, tmp_path, tiny_lm, embedder):
    report = copy_store(mixed.path, tmp_path / "copy")
    assert report.rows == 6 and report.adapters == 3
    with ParamDB.open(tmp_path / "copy", model=tiny_lm, embedder=embedder) as c:
        assert kinds(c) == kinds(mixed) and blob_keys(c) == blob_keys(mixed) and check(c.handle.store, c.handle.models).ok


def test_compact_skips_pending_rows_and_refine_writes_them_in_the_new_dtype(mixed, tiny_lm, embedder):
    path = mixed.path
    mixed.close()
    report = compact(path, "int8")
    assert report.converted == 3 and report.pending == 3 and not report.damaged and report.rows == 6
    with ParamDB.open(path, model=tiny_lm, embedder=embedder) as db:
        assert check(db.handle.store, db.handle.models).ok and kinds(db)["pending"] == 3
        refine(db.handle.store, db.handle.models)
        from paramdb.storage.codec import adapter_dtype
        assert {adapter_dtype(db.handle.store.blobs.get_adapter(k)) for k in blob_keys(db).values()} == {"int8"}


def test_migrate_verifies_a_store_with_pending_rows_without_calling_them_damaged(mixed):
    path = mixed.path
    mixed.close()
    report = migrate(path)
    assert report.rows == 6 and report.damaged == []


def test_exporting_a_pending_row_says_in_one_line_it_has_no_adapter_yet(mixed, tmp_path):
    with pytest.raises(NoAdapterYet) as err:
        export_peft(mixed.handle.store, mixed.handle.models, "d4", tmp_path / "out")
    assert "no adapter yet" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(NoAdapterYet):
        export_peft(mixed.handle.store, mixed.handle.models, ["d0", "d4"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_exporting_a_questions_merge_skips_pending_hits(mixed, tmp_path):
    done = export_peft(mixed.handle.store, mixed.handle.models, None, tmp_path / "q", question="Where does person 4 live? person 1", k=6)
    assert set(done.hits) == {"d0", "d1", "d2"} and set(done.skipped) == {"d3", "d4", "d5"}
    side = json.loads((tmp_path / "q" / "paramdb_export.json").read_text())
    assert set(side["pending_skipped"]) == {"d3", "d4", "d5"}


def test_exporting_a_merge_of_only_pending_hits_is_refused(db, tmp_path):
    db.insert(DOCS, parameterize="later")
    with pytest.raises(InvalidInput, match="all pending"):
        export_peft(db.handle.store, db.handle.models, None, tmp_path / "q", question="person 4", k=2)
    assert not (tmp_path / "q").exists()


def test_import_beside_pending_rows_and_refine_leave_the_imported_row_alone(mixed, tmp_path):
    export_peft(mixed.handle.store, mixed.handle.models, "d0", tmp_path / "lora")
    import_peft(mixed.handle.store, mixed.handle.models, tmp_path / "lora", "vendor", "A vendor's text about town 0.")
    refine(mixed.handle.store, mixed.handle.models)
    assert mixed.get("vendor").adapter_kind == "imported"
    assert kinds(mixed) == {"trained": 6, "translated": 0, "imported": 1, "pending": 0}


def test_delete_and_upsert_of_a_pending_row(mixed):
    mixed.delete("d3")
    mixed.upsert(DOCS[4])                                 # trained now: the upsert trains it
    assert mixed.get("d4").adapter_kind == "trained" and "d3" not in mixed
    assert check(mixed.handle.store, mixed.handle.models).ok and not [f for f in check(mixed.handle.store, mixed.handle.models).findings if f.kind == "orphan-blobs"]


# ------------------------------------------------------------------------------------------ bad input
def _cli(monkeypatch, tiny_lm, embedder):
    real = commands.open_db
    monkeypatch.setattr(commands, "open_db",
                        lambda p, create=False, **kw: real(p, create, **{**kw, "model": tiny_lm, "embedder": embedder}))
    return lambda *args: CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("other", [["--translate"], ["--ray"]])
def test_defer_with_translate_or_ray_is_a_one_line_error_and_stores_nothing(mixed, tmp_path, monkeypatch, tiny_lm,
                                                                            embedder, other):
    f = tmp_path / "new.jsonl"
    f.write_text(json.dumps({"id": "x", "text": "Person 7 lives in town 49."}) + "\n")
    path = mixed.path
    mixed.close()
    before = contents(path)
    r = _cli(monkeypatch, tiny_lm, embedder)("insert", path, f, "--defer", *other)
    assert r.exit_code == 2 and r.output.startswith("error: ") and len(r.output.strip().splitlines()) == 1, r.output
    assert "--defer" in r.output and other[0] in r.output
    assert contents(path) == before


def test_later_on_ray_is_refused_before_anything_starts(db):
    with pytest.raises(InvalidInput, match="runs locally"):
        db.insert(DOCS, parameterize="later", executor="ray")
    assert len(db) == 0


def test_refine_on_a_read_only_store_is_a_one_line_error_and_changes_nothing(mixed, monkeypatch, tiny_lm, embedder):
    path = mixed.path
    mixed.close()
    before = contents(path)
    with ParamDB.open(path, readonly=True, model=tiny_lm, embedder=embedder) as ro:
        with pytest.raises(ReadOnlyStore, match="refine refused"):
            refine(ro.handle.store, ro.handle.models)
    real_os_access = os.access                     # the CLI on a store whose files this process cannot write
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if mode == os.W_OK else real_os_access(p, mode, **kw))
    for args in (["refine", path], ["refine", path, "--watch"]):
        r = _cli(monkeypatch, tiny_lm, embedder)(*args)
        assert r.exit_code != 0 and r.output.startswith("error: ") and len(r.output.strip().splitlines()) == 1
        assert "read-only" in r.output and "refine" in r.output
    assert contents(path) == before


def test_interval_without_watch_is_a_usage_error(mixed, monkeypatch, tiny_lm, embedder):
    r = _cli(monkeypatch, tiny_lm, embedder)("refine", mixed.path, "--interval", "2")
    assert r.exit_code == 2 and "--interval needs --watch" in r.output


# ------------------------------------------------------------------------------------------ content ids
@pytest.mark.parametrize("later", [False, True])
def test_inserting_the_same_id_less_text_twice_stores_one_row(db, later):
    how = {"parameterize": "later"} if later else {}
    first = db.insert(["same text"], **how)
    second = db.insert(["same text"], **how)
    assert list(first) == [content_id("same text")] and list(second) == [] and second.skipped == list(first)
    streamed = db.insert(iter(["same text", "other text"]), **how)
    assert list(streamed) == [content_id("other text")] and streamed.skipped == list(first)
    assert len(db) == 2


def test_the_same_text_twice_in_one_insert_gets_two_stable_ids(db):
    first = db.insert(["twice", "twice"], parameterize="later")
    assert list(first) == [content_id("twice"), content_id("twice") + "-2"]
    again = db.insert(["twice", "twice"], parameterize="later")
    assert list(again) == [] and again.skipped == list(first)


@pytest.mark.parametrize("bad, message", [({"batch_size": 0}, "batch size must be at least 1"),
                                          ({"limit": 0}, "limit must be at least 1"),
                                          ({"interval": 0}, "interval must be above 0 seconds"),
                                          ({"batch_size": "8"}, "batch size must be at least 1")])
def test_refine_refuses_bad_knobs_before_training_anything(mixed, bad, message):
    before = mixed.stats()["adapters"]
    with pytest.raises(InvalidInput, match=message):
        refine(mixed.handle.store, mixed.handle.models, **bad)
    assert mixed.stats()["adapters"] == before


def test_refine_runs_as_an_operation_on_the_store_and_its_models(mixed):

    result = refine(mixed._store, mixed._models, batch_size=4)
    assert result.refined > 0 and result.remaining == 0
    assert mixed.stats()["adapters"].get("pending", 0) == 0
