"""SIGKILL `distill` and `refine` at random moments: nothing committed is lost, every row keeps a readable
adapter, the translator is the old one or the new one whole, and a rerun of refine finishes the job."""
from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import FAST_TRAINING
from paramdb import ParamDB
from paramdb.engine import translator_blob as translators
from paramdb.knowledge.lora import side_path
from paramdb.engine.adapters import factors_for_ids
from paramdb.ops.check import check
from paramdb.ops.distill_store import distill
from paramdb.ops.refine import refine

KILLS = 3
DOCS = [{"id": f"d{i}", "text": f"Person {i} lives in town {i * 7}. Person {i} bakes bread there."} for i in range(10)]

WORKER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    import torch; torch.set_num_threads(1)
    from conftest import make_tiny_lm
    from paramdb import ParamDB
    from paramdb.ops.distill_store import distill
    from paramdb.ops.refine import refine
    with ParamDB.open({store!r}, model=make_tiny_lm()) as db:
        print("ready", flush=True)
        for _ in range(100):
            {op}
""")


def kill_during(tmp_path, store, op: str, seed: int) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(__import__("pathlib").Path(__file__).parent), store=str(store), op=op))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(random.Random(seed).uniform(0.2, 2.0))
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.fixture
def store(tmp_path, tiny_lm, embedder):
    path = tmp_path / "store"
    with ParamDB.open(path, create=True, model=tiny_lm, embedder=embedder, training=FAST_TRAINING) as db:
        db.insert(DOCS[:6])
        distill(db.handle.store, db.handle.models, epochs=1)
        db.insert(DOCS[6:], parameterize="translate")
    return path


def assert_sound(path, tiny_lm, embedder) -> dict:
    with ParamDB.open(path, model=tiny_lm, embedder=embedder) as db:
        assert sorted(d.id for d in db.list()) == sorted(d["id"] for d in DOCS)
        names = [n for n, _ in side_path(db.handle.models.lm.model).modules]
        assert len(factors_for_ids(db.handle.store, db.handle.models.lm, [d["id"] for d in DOCS])) == len(DOCS)
        assert all(len(f) == len(names) for f in factors_for_ids(db.handle.store, db.handle.models.lm, [d["id"] for d in DOCS]))
        assert check(db.handle.store, db.handle.models).ok, check(db.handle.store, db.handle.models).findings
        translators.load(db.handle.store.blobs, db.config.model_fingerprint, str(path))   # whole, CRC-checked
        return db.stats()["adapters"]


@pytest.mark.parametrize("seed", range(KILLS))
def test_a_kill_during_distill_leaves_the_store_and_a_whole_translator(store, tmp_path, tiny_lm, embedder, seed):
    kill_during(tmp_path, store, "distill(db.handle.store, db.handle.models, epochs=3, teacher='context')", seed)
    assert assert_sound(store, tiny_lm, embedder) == {"trained": 6, "translated": 4, "imported": 0, "pending": 0}


@pytest.mark.parametrize("seed", range(KILLS))
def test_a_kill_during_refine_loses_nothing_and_a_rerun_finishes(store, tmp_path, tiny_lm, embedder, seed):
    kill_during(tmp_path, store, "refine(db.handle.store, db.handle.models, batch_size=1)", seed)
    kinds = assert_sound(store, tiny_lm, embedder)
    assert kinds["trained"] + kinds["translated"] == 10
    with ParamDB.open(store, model=tiny_lm, embedder=embedder) as db:
        refine(db.handle.store, db.handle.models, batch_size=4)
        assert db.stats()["adapters"] == {"trained": 10, "translated": 0, "imported": 0, "pending": 0}
        check(db.handle.store, db.handle.models, repair=True)                  # orphans a kill left behind
        assert check(db.handle.store, db.handle.models).ok and not check(db.handle.store, db.handle.models).findings
