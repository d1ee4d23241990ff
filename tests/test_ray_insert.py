"""insert(executor="ray") on a local Ray instance with two workers: same adapters as a local insert, a worker
that dies mid-batch, a document that keeps failing, and a driver killed mid-run then rerun.

Workers load the model from a path, so the tiny random Llama is saved to a folder and stores are created
with that path. Faults are injected into the workers only, by a Ray worker setup hook that wraps
``paramdb.engine.parameterize.build_samples``: a document whose text holds FAIL_MARKER raises there, and the
first batch holding CRASH_MARKER kills its worker process (os._exit) mid-batch.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import FAST_TRAINING, make_tiny_lm
from paramdb import ParamDB
from paramdb.config import FORMAT_VERSION
from paramdb.content_ids import with_content_ids
from paramdb import validate
from paramdb.errors import ExecutorError, InvalidInput
from paramdb.layout import Layout
from paramdb.storage.codec import decode_tensors, decode_vector
from paramdb.storage.meta import MetaStore
from paramdb.ops.check import check

FAIL_MARKER, CRASH_MARKER = "Quorblax", "Zindrel"
FAULTS_ENV = "PARAMDB_TEST_FAULT_DIR"
ROOT = Path(__file__).resolve().parents[1]


def _docs(n: int, prefix: str = "d", extra: dict | None = None) -> list[dict]:
    extra = extra or {}
    return [{"id": f"{prefix}{i}", "text": extra.get(i, f"Document {i} tells that lamp {i} burns {i * 3} hours. "
                                                       f"It was lit in year {1900 + i}."),
             "metadata": {"n": i}} for i in range(n)]


def _install_faults() -> None:
    """Runs in every worker process of the test cluster (never in this process)."""
    import paramdb.engine.parameterize as dbmod

    real = dbmod.build_samples

    def build_samples(lm, texts, settings):
        if any(FAIL_MARKER in t for t in texts):
            raise RuntimeError("injected failure")
        token = Path(os.environ[FAULTS_ENV]) / "crashed"
        if any(CRASH_MARKER in t for t in texts) and not token.exists():
            token.touch()
            os._exit(1)
        return real(lm, texts, settings)

    dbmod.build_samples = build_samples


# ------------------------------------------------------------------------------------------ no cluster needed
def test_content_ids_are_stable_and_keep_repeated_texts_apart():
    items = [("a", "same text"), ("b", {"text": "same text"}), ("c", {"id": "x", "text": "other"})]
    first = validate.documents(with_content_ids(items))
    again = validate.documents(with_content_ids(items))
    assert [d.id for d in first] == [d.id for d in again]
    assert first[0].id != first[1].id and first[2].id == "x"


def test_missing_ray_says_how_to_install_it(db, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)          # import ray -> ImportError
    with pytest.raises(ExecutorError, match=r"pip install 'paramdb\[ray\]'"):
        db.insert(["some text"], executor="ray")
    assert len(db) == 0


def test_unknown_executor_is_invalid_input(db):
    with pytest.raises(InvalidInput, match="unknown executor 'dask'"):
        db.insert(["some text"], executor="dask")


def test_ray_workers_without_ray_is_a_usage_error(tmp_path):
    from paramdb.cli import main

    f = tmp_path / "d.txt"
    f.write_text("hello")
    result = CliRunner().invoke(main, ["insert", str(tmp_path / "s"), str(f), "--ray-workers", "2"])
    assert result.exit_code == 2 and "--ray-workers needs --ray" in result.output


# ------------------------------------------------------------------------------------------ on a local cluster
@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("tiny-model") / "tiny-llama"
    lm = make_tiny_lm()
    lm.model.save_pretrained(path)
    lm.tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A local Ray instance with two CPU slots (two workers); its address, for a second driver."""
    ray = pytest.importorskip("ray")
    from ray import cloudpickle

    fault_dir = tmp_path_factory.mktemp("ray-faults")
    cloudpickle.register_pickle_by_value(sys.modules[__name__])   # workers cannot import this test module
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": _install_faults, "env_vars": {FAULTS_ENV: str(fault_dir)}})
    try:
        yield {"address": ray.get_runtime_context().gcs_address, "fault_dir": fault_dir}
    finally:
        ray.shutdown()


def _store(path: Path, model_dir: str, **training) -> ParamDB:
    return ParamDB.open(path, create=True, model=model_dir, training={**FAST_TRAINING, **training})


def _rows(db: ParamDB) -> dict[str, dict]:
    return {r["id"]: r for r in db.handle.store.meta.get([d.id for d in db.list()])}


def _adapter(db: ParamDB, key: str) -> dict[str, np.ndarray]:
    return decode_tensors(db.handle.store.blobs.get_adapter(key))


def _assert_same_adapters(a: ParamDB, b: ParamDB, ids: list[str]) -> None:
    ra, rb = _rows(a), _rows(b)
    for i in ids:
        ad, bd = _adapter(a, ra[i]["blob_key"]), _adapter(b, rb[i]["blob_key"])
        assert ad.keys() == bd.keys()
        for name in ad:
            np.testing.assert_allclose(ad[name], bd[name], rtol=1e-3, atol=1e-5, err_msg=f"{i} {name}")
        np.testing.assert_allclose(decode_vector(a.handle.store.blobs.get_embedding(ra[i]["blob_key"])),
                                   decode_vector(b.handle.store.blobs.get_embedding(rb[i]["blob_key"])), atol=1e-6)


@pytest.mark.slow
def test_ray_insert_equals_local_insert(ray_cluster, tiny_model_dir, tmp_path):
    docs = _docs(6)
    ids = [d["id"] for d in docs]
    with _store(tmp_path / "local", tiny_model_dir) as local, _store(tmp_path / "ray", tiny_model_dir) as dist:
        local.insert(docs, batch_size=2)
        seen = []
        report = dist.insert(docs, batch_size=2, executor="ray", progress=lambda d, t: seen.append((d, t)))
        assert sorted(report) == sorted(ids) and not report.failed and not report.skipped
        assert report.stats["workers"] == 2 and len(report.stats["docs_per_worker_process"]) == 2
        assert seen[0] == (0, 6) and seen[-1] == (6, 6)
        assert len(dist) == 6 and {d.id: (d.text, d.metadata) for d in dist.list()} == \
            {d["id"]: (d["text"], d["metadata"]) for d in docs}
        _assert_same_adapters(local, dist, ids)
        assert [h.id for h in dist.query("lamp 3 burns", k=1)] == ["d3"]

        rerun = dist.insert(docs, batch_size=2, executor="ray")          # all stored: skipped, no cluster work
        assert list(rerun) == [] and sorted(rerun.skipped) == sorted(ids) and len(dist) == 6


@pytest.mark.slow
def test_a_dead_worker_is_retried_and_a_failing_document_is_reported(ray_cluster, tiny_model_dir, tmp_path):
    docs = _docs(8, extra={1: f"{CRASH_MARKER} kills the worker once. Then it is fine.",
                           4: f"{FAIL_MARKER} always fails to parameterize."})
    with _store(tmp_path / "ray", tiny_model_dir) as db:
        report = db.insert(docs, batch_size=2, executor="ray")
        assert (ray_cluster["fault_dir"] / "crashed").exists()            # a worker did die mid-batch
        assert report.failed == [("d4", "RuntimeError: injected failure")]
        assert report.stats["batches_on_restarted_workers"] >= 1
        assert report.stats["docs_retried"] == 2                         # d4's batch, split
        stored = [d.id for d in db.list()]
        assert sorted(stored) == sorted(f"d{i}" for i in range(8) if i != 4) == sorted(report)
        rows = _rows(db)
        assert all(db.handle.store.blobs.get_adapter(r["blob_key"]) for r in rows.values())


@pytest.mark.slow
def test_a_killed_driver_leaves_whole_batches_and_a_rerun_inserts_only_what_is_missing(
        ray_cluster, tiny_model_dir, tmp_path):
    n = 10
    docs = _docs(n)
    ids = {d["id"] for d in docs}
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps(d) + "\n" for d in docs))
    store = tmp_path / "ray"
    _store(store, tiny_model_dir, epochs=30).close()                       # slow enough to kill mid-run
    command = ["insert", str(store), str(src), "--batch-size", "1", "--ray", ray_cluster["address"]]

    meta = MetaStore(Layout(store).read(FORMAT_VERSION))
    proc = subprocess.Popen([sys.executable, "-c", "from paramdb.cli import main; main()", *command],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while meta.count() == 0 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    committed = {r["id"] for r in meta.list()}
    meta.close()
    assert 0 < len(committed) < n

    from paramdb.cli import main

    result = CliRunner().invoke(main, [*command, "--json"])                # the same command again
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(out["skipped"]) == committed and set(out["ids"]) == ids - committed and not out["failed"]
    with ParamDB.open(store) as db:
        rows = db.handle.store.meta.list()
        assert len(rows) == n == len(db) and {r["id"] for r in rows} == ids      # none lost, none twice
        assert all(db.handle.store.blobs.get_adapter(r["blob_key"]) for r in rows)


@pytest.mark.slow
def test_id_less_texts_get_the_same_ids_locally_and_on_ray_so_a_second_insert_skips_them(ray_cluster, tiny_model_dir,
                                                                                         tmp_path):
    texts = ["Lamp 1 burns blue.", "Lamp 2 burns red.", "Lamp 1 burns blue."]
    with _store(tmp_path / "s", tiny_model_dir) as db:
        local = db.insert(texts[:2])
        on_ray = db.insert(texts, executor="ray")          # the first two are the local rows: skipped
        assert list(on_ray) == [list(local)[0] + "-2"] and on_ray.skipped == list(local)
        again = db.insert(texts)
        assert list(again) == [] and sorted(again.skipped) == sorted(list(local) + list(on_ray))
        assert len(db) == 3


@pytest.mark.slow
def test_ray_skips_a_pending_row_and_an_upsert_on_ray_trains_it(ray_cluster, tiny_model_dir, tmp_path):
    docs = _docs(3)
    with _store(tmp_path / "s", tiny_model_dir) as db:
        db.insert(docs[:2], parameterize="later")
        report = db.insert(docs, executor="ray", batch_size=2)
        assert list(report) == ["d2"] and sorted(report.skipped) == ["d0", "d1"]
        assert db.stats()["adapters"] == {"trained": 1, "translated": 0, "imported": 0, "pending": 2}
        db.insert(docs[:1], executor="ray", upsert=True)
        assert db.get("d0").adapter_kind == "trained" and db.get("d1").adapter_kind == "pending"
        assert check(db.handle.store, db.handle.models).ok
