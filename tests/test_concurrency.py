"""One writer at a time across processes, readers never blocked and never shown half a batch."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from conftest import FAST_TRAINING
from paramdb import ParamDB
from paramdb.errors import StoreLocked
from paramdb.storage.lock import WriterLock

HOLD = textwrap.dedent("""
    import sys, time
    from paramdb.storage.lock import WriterLock
    lock = WriterLock(sys.argv[1])
    with lock.held("test holder"):
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
""")


@pytest.fixture
def holder(tmp_path):
    """Start a process that holds ``tmp_path/writer.lock`` for the given seconds."""
    procs = []

    def start(path, seconds: float) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdout.readline().strip() == "held"
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_a_second_writer_gives_up_after_its_timeout_naming_the_holder(tmp_path, holder):
    proc = holder(tmp_path / "writer.lock", 30)
    lock = WriterLock(tmp_path / "writer.lock", timeout=0.3)
    t0 = time.monotonic()
    with pytest.raises(StoreLocked, match=f"pid {proc.pid} .*test holder"):
        with lock.held("insert"):
            pass
    assert time.monotonic() - t0 >= 0.3


def test_a_waiting_writer_proceeds_once_the_holder_finishes(tmp_path, holder):
    holder(tmp_path / "writer.lock", 0.5)
    with WriterLock(tmp_path / "writer.lock", timeout=20).held("insert"):
        pass


def test_a_killed_holder_leaves_the_store_unlocked(tmp_path, holder):
    proc = holder(tmp_path / "writer.lock", 60)
    proc.kill()
    proc.wait()
    with WriterLock(tmp_path / "writer.lock", timeout=0.5).held("insert"):
        pass


def test_the_lock_is_reentrant_within_one_handle(tmp_path):
    lock = WriterLock(tmp_path / "writer.lock", timeout=0.2)
    with lock.held("outer"), lock.held("inner"):
        pass
    with lock.try_held("again") as taken:
        assert taken


def test_insert_and_delete_fail_cleanly_while_another_process_writes(db, holder, store_path, tiny_lm):
    db.insert([{"id": "a", "text": "Alpha is the first letter."}])
    with ParamDB.open(store_path, model=tiny_lm, lock_timeout=0.2) as other:
        holder(store_path / "writer.lock", 30)
        with pytest.raises(StoreLocked):
            other.insert([{"id": "b", "text": "Beta is the second letter."}])
        with pytest.raises(StoreLocked):
            other.delete("a")
        assert [d.id for d in other.list()] == ["a"]          # nothing half-written, nothing lost


def test_readers_are_not_blocked_by_a_writer(db, holder, store_path):
    db.insert([{"id": "a", "text": "Alpha is the first letter."}])
    holder(store_path / "writer.lock", 30)
    with ParamDB.open(store_path, lock_timeout=0.1) as reader:
        assert reader.get("a").text == "Alpha is the first letter."
        assert [h.id for h in reader.query("first letter", k=1)] == ["a"]
        assert len(reader) == 1


def test_index_files_are_left_alone_while_another_process_writes(db, holder, store_path):
    db.insert([{"id": "a", "text": "Alpha is the first letter."}])
    db.close()
    sidecar = store_path / "vectors.hnsw.json"
    before = sidecar.read_bytes()
    holder(store_path / "writer.lock", 30)
    os.remove(store_path / "lexical.bm25.json")             # make the reader rebuild and want to save
    with ParamDB.open(store_path) as reader:
        assert [h.id for h in reader.query("first letter", k=1, method="bm25")] == ["a"]
    assert sidecar.read_bytes() == before and not (store_path / "lexical.bm25.json").exists()


def test_a_reader_sees_whole_batches_only(tmp_path, tiny_lm, embedder):
    """A batch commits in one SQL transaction: a concurrent reader counts 0 or 4, never 1-3."""
    path = tmp_path / "store"
    ParamDB.open(path, create=True, model=tiny_lm, embedder=embedder, training=FAST_TRAINING).close()
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys; sys.path.insert(0, {os.path.dirname(__file__)!r})
        import torch; torch.set_num_threads(1)
        from conftest import make_tiny_lm
        from paramdb import ParamDB
        from paramdb.knowledge.embed import Embedder
        with ParamDB.open({str(path)!r}, model=make_tiny_lm()) as db:
            for b in range(3):
                db.insert([{{"text": f"Batch {{b}} document {{i}} about rivers."}} for i in range(4)])
    """)])
    counts = set()
    with ParamDB.open(path) as reader:
        while writer.poll() is None:
            counts.add(reader.count())
            time.sleep(0.005)
        counts.add(reader.count())
    assert writer.returncode == 0
    assert counts <= {0, 4, 8, 12} and 12 in counts
