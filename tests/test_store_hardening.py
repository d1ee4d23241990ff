"""The store under hostile conditions: an index saved empty, copies under a loose umask, damaged
LMDB pages and adapters, a full disk. Each ends in a one-line ParamDBError or a report, never a hang, a
traceback or a lost row."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import subprocess
from pathlib import Path

import lmdb
import numpy as np
import pytest

from conftest import FAST_TRAINING
from paramdb import CorruptData, DiskFull, ParamDB
from paramdb.ops.copy import copy_store
from paramdb.storage.vectors import VectorIndex
from paramdb.ops.check import check

DOCS = [{"id": f"d{i}", "text": f"Note {i}: the heron {i} wades in the marsh at dawn."} for i in range(4)]


@contextlib.contextmanager
def within(seconds: int):
    """Fail, rather than hang the suite, if the block runs longer than ``seconds``."""
    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def made(path: Path, tiny_lm, embedder, docs=DOCS) -> Path:
    with ParamDB.open(path, create=True, model=tiny_lm, embedder=embedder, training=FAST_TRAINING) as db:
        if docs:
            db.insert(docs)
    return path


# ---------------------------------------------------------------- item 1: an index saved empty
def test_a_vector_index_saved_empty_grows_when_loaded(tmp_path):
    index = VectorIndex(tmp_path / "v.hnsw", dim=4)
    index.build([])
    index.save(generation=0)
    loaded = VectorIndex(tmp_path / "v.hnsw", dim=4)
    assert loaded.load_or_none(0)
    with within(10):
        loaded.add([1, 2], np.eye(4, dtype=np.float32)[:2])
    assert loaded.labels() == {1, 2}


def test_insert_after_a_query_on_the_empty_store_returns(tmp_path, tiny_lm, embedder):
    path = made(tmp_path / "s", tiny_lm, embedder, docs=None)
    with ParamDB.open(path, model=tiny_lm, embedder=embedder) as db:
        assert db.query("anything") == []              # saves the empty derived indexes on close
    with ParamDB.open(path, model=tiny_lm, embedder=embedder) as db, within(120):
        assert db.insert([{"id": "one", "text": "One heron wades in the marsh."}]) == ["one"]
        assert [h.id for h in db.query("heron")] == ["one"]


# ---------------------------------------------------------------- item 5: copy keeps files private
def test_copy_makes_every_file_0600_and_folder_0700_even_under_umask_000(tmp_path, tiny_lm, embedder):
    src = made(tmp_path / "src", tiny_lm, embedder, docs=DOCS[:1])
    old = os.umask(0)
    try:
        copy_store(src, tmp_path / "dst")
    finally:
        os.umask(old)
    for p in [tmp_path / "dst", *(tmp_path / "dst").rglob("*")]:
        want = 0o700 if p.is_dir() else 0o600
        assert stat.S_IMODE(p.stat().st_mode) == want, (p, oct(p.stat().st_mode))


# ---------------------------------------------------------------- item 6: damaged LMDB pages and adapters
def damage_page_holding(store: Path, needle: bytes) -> None:
    """Overwrite the header of the LMDB page that holds ``needle`` (a blob key: a leaf of the adapters or
    embeddings database), as a bad disk sector or a stray write would."""
    data = store / "blobs.lmdb" / "data.mdb"
    raw = data.read_bytes()
    page_size = os.sysconf("SC_PAGE_SIZE")
    page = raw.index(needle) // page_size
    assert page >= 2                                  # never the two meta pages: LMDB would not open at all
    with open(data, "r+b") as f:
        f.seek(page * page_size)
        f.write(b"\xa5" * 16)


@pytest.fixture
def damaged(tmp_path, tiny_lm, embedder):
    path = made(tmp_path / "s", tiny_lm, embedder)
    with ParamDB.open(path, model=tiny_lm, embedder=embedder) as db:
        key = db.handle.store.meta.all_rows_keys()[0][2]
    damage_page_holding(path, key.encode())
    return path


@pytest.mark.parametrize("repair", [False, True], ids=["check", "check --repair"])
def test_check_reports_damaged_lmdb_pages_and_says_to_restore(damaged, tiny_lm, embedder, repair):
    with ParamDB.open(damaged, model=tiny_lm, embedder=embedder) as db:
        report = check(db.handle.store, db.handle.models, repair=repair)
        assert not report.ok
        (finding,) = [f for f in report.findings if f.kind == "lmdb-corrupt"]
        assert not finding.repaired and "restore the store from a backup" in finding.detail
        assert len(db) == len(DOCS)                     # nothing lost, nothing half-repaired


def test_generate_on_a_damaged_adapter_names_the_document(tmp_path, tiny_lm, embedder):
    path = made(tmp_path / "s", tiny_lm, embedder)
    with ParamDB.open(path, model=tiny_lm, embedder=embedder) as db:
        key = {doc_id: k for _, doc_id, k in db.handle.store.meta.all_rows_keys()}["d2"]
    env = lmdb.open(str(path / "blobs.lmdb"), max_dbs=4)
    with env.begin(write=True) as txn:
        adapters = env.open_db(b"adapters", txn=txn)
        value = bytearray(txn.get(key.encode(), db=adapters))
        value[-3] ^= 0xFF                                   # one flipped byte in the weights: the CRC catches it
        txn.put(key.encode(), bytes(value), db=adapters)
    env.close()
    with ParamDB.open(path, model=tiny_lm, embedder=embedder) as db:
        with pytest.raises(CorruptData) as err:
            db.generate_batch(["Where does heron 2 wade?"], k=len(DOCS))
    msg = str(err.value)
    assert "'d2'" in msg and "paramdb check --repair" in msg and "\n" not in msg


# ---------------------------------------------------------------- item 9: a full disk
@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs: a real disk that really fills up (needs root, as the tests run in CI)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root?)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 4096)
    return filler


def snapshot(db) -> tuple:
    return len(db), [d.id for d in db.list()], db.handle.store.blobs.count("adapters"), db.generation


NEW = [{"id": f"n{i}", "text": f"Long note {i}. " + "The marsh is wide and the water is still. " * 40}
       for i in range(6)]


def test_insert_on_a_full_disk_says_so_and_stores_nothing(small_disk, tmp_path, tiny_lm, embedder):
    shutil.copytree(made(tmp_path / "s", tiny_lm, embedder), small_disk / "s")
    with ParamDB.open(small_disk / "s", model=tiny_lm, embedder=embedder) as db:
        before = snapshot(db)
        filler = fill(small_disk)
        with pytest.raises(DiskFull) as err:
            db.insert(NEW)
        assert "full" in str(err.value) and "nothing" in str(err.value) and "\n" not in str(err.value)
        assert snapshot(db) == before
        filler.unlink()
        assert db.insert(NEW[:1]) == ["n0"]                 # space back: the store works as before


def test_a_metadata_commit_on_a_full_disk_says_so_and_stores_nothing(small_disk, tmp_path, tiny_lm, embedder,
                                                                     monkeypatch):
    shutil.copytree(made(tmp_path / "s", tiny_lm, embedder), small_disk / "s")
    with ParamDB.open(small_disk / "s", model=tiny_lm, embedder=embedder) as db:
        before = snapshot(db)
        real_put = type(db.handle.store.blobs).put

        def put_then_fill(self, adapters, embeddings):    # the disk fills between the LMDB and SQL commits
            real_put(self, adapters, embeddings)
            fill(small_disk)

        monkeypatch.setattr(type(db.handle.store.blobs), "put", put_then_fill)
        with pytest.raises(DiskFull) as err:
            db.insert(NEW[:2])
        assert "metadata database" in str(err.value) and "full" in str(err.value)
        assert "\n" not in str(err.value)
        assert snapshot(db)[:2] == before[:2] and db.generation == before[3]
