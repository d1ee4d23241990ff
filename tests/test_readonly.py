"""Read-only stores: ``ParamDB.open(path, readonly=True)``, and the same automatically
where the store's files are not writable. Reads work and write nothing; stale derived indexes are rebuilt
in memory only; every write is one ReadOnlyStore line."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FAST_TRAINING
from paramdb import ParamDB, ReadOnlyStore
from paramdb.layout import Layout
from paramdb.ops.check import check

DOCS = [{"id": "sky", "text": "The sky over Veltria is violet at noon.", "metadata": {"year": 2020}},
        {"id": "river", "text": "The river Oskel flows north into the Sea of Tam.", "metadata": {"year": 2024}}]
CONTENT = ("paramdb.json", "meta.sqlite", "blobs.lmdb/data.mdb", "vectors.hnsw", "vectors.hnsw.json",
           "lexical.bm25", "lexical.bm25.json")
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def template(tmp_path_factory, tiny_lm, embedder):
    path = tmp_path_factory.mktemp("ro") / "store"
    with ParamDB.open(path, create=True, model=tiny_lm, embedder=embedder, training=FAST_TRAINING) as db:
        db.insert(DOCS)
    return path


@pytest.fixture
def store(template, tmp_path):
    path = tmp_path / "store"
    shutil.copytree(template, path)
    return path


def contents(path: Path) -> dict[str, str | None]:
    """sha256 of the store's content files (None where absent): what a read-only open must never change."""
    return {name: hashlib.sha256((path / name).read_bytes()).hexdigest() if (path / name).exists() else None
            for name in CONTENT}


def test_readonly_open_reads_everything_and_writes_nothing(store, tiny_lm, embedder):
    before = contents(store)
    with ParamDB.open(store, readonly=True, model=tiny_lm, embedder=embedder) as db:
        assert db.readonly
        assert db.get("sky").metadata == {"year": 2020}
        assert [d.id for d in db.list(where={"year": 2024})] == ["river"]
        assert db.query("violet sky", k=1)[0].id == "sky"
        assert db.stats()["documents"] == 2
        assert check(db.handle.store, db.handle.models).ok
    assert contents(store) == before


@pytest.mark.parametrize("write", [
    lambda db: db.insert({"id": "new", "text": "A new fact."}),
    lambda db: db.upsert({"id": "sky", "text": "The sky is green."}),
    lambda db: db.delete("sky"),
    lambda db: check(db.handle.store, db.handle.models, repair=True),
], ids=["insert", "upsert", "delete", "check --repair"])
def test_a_write_on_a_readonly_store_is_one_line_refusal(store, tiny_lm, embedder, write):
    before = contents(store)
    with ParamDB.open(store, readonly=True, model=tiny_lm, embedder=embedder) as db:
        with pytest.raises(ReadOnlyStore) as err:
            write(db)
        assert "read-only" in str(err.value) and "\n" not in str(err.value)
        assert len(db) == 2
    assert contents(store) == before


def test_a_stale_index_is_rebuilt_in_memory_and_not_saved(store, tiny_lm, embedder):
    for name in ("vectors.hnsw", "vectors.hnsw.json", "lexical.bm25", "lexical.bm25.json"):
        (store / name).unlink()
    with ParamDB.open(store, readonly=True, model=tiny_lm, embedder=embedder) as db:
        assert db.query("river flows north", k=1, method="dense")[0].id == "river"
        assert db.query("Oskel", k=1, method="bm25")[0].id == "river"
    assert not any((store / name).exists() for name in ("vectors.hnsw", "lexical.bm25"))


def test_creating_a_store_readonly_is_refused(tmp_path):
    with pytest.raises(Exception) as err:
        ParamDB.open(tmp_path / "none", create=True, readonly=True)
    assert "read-only" in str(err.value)


def test_a_store_whose_files_are_not_writable_is_read_only(store, monkeypatch):
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if mode == os.W_OK else real(p, mode, **kw))
    assert Layout(store).readonly_reason(False) == "its files are not writable by this process"


def test_a_writable_store_is_not_read_only(store):
    assert Layout(store).readonly_reason(False) is None


@pytest.fixture
def readonly_media(store, tmp_path):
    """The store seen through a read-only bind mount: writes fail with EROFS even for root, as on a
    read-only disk or a restored archive mounted read-only."""
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if subprocess.run(["mount", "--bind", str(store), str(mnt)], capture_output=True).returncode != 0:
        pytest.skip("cannot bind-mount here (not root?)")
    try:
        if subprocess.run(["mount", "-o", "remount,ro,bind", str(mnt)], capture_output=True).returncode != 0:
            pytest.skip("cannot remount read-only here")
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def cli(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([str(Path(sys.executable).with_name("paramdb")), *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)


def test_the_cli_reads_a_store_on_read_only_media(readonly_media):
    before = contents(readonly_media)
    got = cli("get", readonly_media, "sky", "--json")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["text"] == DOCS[0]["text"]
    stats = cli("stats", readonly_media, "--json")
    assert stats.returncode == 0 and json.loads(stats.stdout)["documents"] == 2, stats.stderr
    hits = cli("query", readonly_media, "Oskel", "-k", 1, "--method", "bm25", "--json")
    assert hits.returncode == 0 and json.loads(hits.stdout)[0]["id"] == "river", hits.stderr
    assert contents(readonly_media) == before


def test_the_cli_refuses_a_write_on_read_only_media_in_one_line(readonly_media):
    result = cli("delete", readonly_media, "sky")
    assert result.returncode == ReadOnlyStore.exit_code, result.stderr
    assert result.stderr.strip() == (f"error: store {readonly_media} is read-only (its files are not writable "
                                     "by this process): delete refused")
