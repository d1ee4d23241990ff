"""`check` finds what is wrong with a store and `--repair` fixes it without losing a committed row."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from paramdb.cli import commands, main
from paramdb.storage.codec import encode_tensors, encode_vector
from paramdb.engine.adapters import factors_for_ids
from paramdb.ops.check import check

DOCS = [{"id": f"d{i}", "text": f"Fact {i}: the beacon of Harl{i} burns green."} for i in range(4)]


@pytest.fixture
def filled(db):
    db.insert(DOCS)
    return db


def kinds(report) -> list[str]:
    return sorted(f.kind for f in report.findings)


def blob_key(db, doc_id: str) -> str:
    return db.handle.store.meta.get([doc_id])[0]["blob_key"]


def test_a_healthy_store_passes_with_nothing_to_report(filled):
    report = check(filled.handle.store, filled.handle.models)
    assert report.ok and report.findings == [] and report.rows == report.adapters == len(DOCS)


def test_orphan_blobs_are_a_notice_and_repair_deletes_them(filled):
    filled.handle.store.blobs.put({"orphan": encode_tensors({"x": np.ones(2)})}, {"orphan": encode_vector(np.ones(3))})
    report = check(filled.handle.store, filled.handle.models)
    assert report.ok and kinds(report) == ["orphan-blobs"]
    assert check(filled.handle.store, filled.handle.models, repair=True).findings[0].repaired
    assert "orphan" not in filled.handle.store.blobs.keys("adapters") and check(filled.handle.store, filled.handle.models).findings == []


def test_a_missing_adapter_is_an_error_that_repair_retrains_from_the_text(filled):
    before = factors_for_ids(filled.handle.store, filled.handle.models.lm, ["d1"])
    filled.handle.store.blobs.delete([blob_key(filled, "d1")])
    report = check(filled.handle.store, filled.handle.models)
    assert not report.ok and kinds(report) == ["adapter-missing", "embedding-missing"]
    assert all(f.subject == "d1" for f in report.findings)
    repaired = check(filled.handle.store, filled.handle.models, repair=True)
    assert repaired.ok and all(f.repaired for f in repaired.findings)
    assert check(filled.handle.store, filled.handle.models).findings == [] and filled.get("d1").text == DOCS[1]["text"]
    after = factors_for_ids(filled.handle.store, filled.handle.models.lm, ["d1"])
    for (a0, b0), (a1, b1) in zip(before[0], after[0]):       # same seed and settings: the same adapter
        assert np.allclose(a0, a1, atol=1e-3) and np.allclose(b0, b1, atol=1e-3)


def test_a_flipped_adapter_byte_fails_its_checksum(filled):
    key = blob_key(filled, "d2")
    raw = bytearray(filled.handle.store.blobs.get_adapter(key))
    raw[-3] ^= 0x01
    filled.handle.store.blobs.put({key: bytes(raw)}, {})
    report = check(filled.handle.store, filled.handle.models)
    assert not report.ok and kinds(report) == ["adapter-checksum"] and report.findings[0].subject == "d2"


def test_an_index_that_claims_to_be_current_but_misses_rows_is_drift(filled, store_path):
    filled.handle.store.indexes._dense.remove([1])                        # damage the saved dense index, keep its generation
    filled.handle.store.indexes._dirty = True
    filled.handle.store.indexes.save()
    report = check(filled.handle.store, filled.handle.models)
    assert not report.ok and kinds(report) == ["index-drift"]
    assert check(filled.handle.store, filled.handle.models, repair=True).ok and check(filled.handle.store, filled.handle.models).findings == []


def test_a_stale_index_is_only_a_notice(filled, store_path):
    filled.close()
    (store_path / "vectors.hnsw.json").unlink()
    with commands.open_db(store_path) as db:
        report = check(db.handle.store, db.handle.models)
    assert report.ok and kinds(report) == ["index-stale"]


def test_cli_check_exits_1_on_an_error_and_0_once_repaired(filled, store_path, tiny_lm, monkeypatch):
    filled.handle.store.blobs.delete([blob_key(filled, "d0")])
    filled.close()
    real = commands.open_db
    monkeypatch.setattr(commands, "open_db", lambda path, *a, **kw: real(path, *a, model=tiny_lm, **kw))
    runner = CliRunner()
    bad = runner.invoke(main, ["check", str(store_path)])
    assert bad.exit_code == 1 and "adapter-missing: d0" in bad.output
    fixed = runner.invoke(main, ["check", str(store_path), "--repair", "--json"])
    assert fixed.exit_code == 0 and json.loads(fixed.output)["ok"]
    assert runner.invoke(main, ["check", str(store_path)]).exit_code == 0
