"""Stores that keep int8 adapters: made so at creation or converted by `paramdb compact`; every operation
(insert, generate, check and repair, backup/restore/verify, copy, migrate) works on them and on mixed stores."""
from __future__ import annotations

import json

import numpy as np
import pytest
import sqlalchemy as sa
import torch
from click.testing import CliRunner

from conftest import FAST_TRAINING
from paramdb import ParamDB
from paramdb.cli import commands, main
from paramdb.errors import InvalidInput
from paramdb.ops.compact import compact
from paramdb.ops.copy import copy_store
from paramdb.ops.migrate import migrate
from paramdb.storage import codec
from paramdb.engine.adapters import factors_for_ids
from stores import blob_bytes, format1_copy, meta_url_of, raw_info
from paramdb.ops.backup import backup, restore, verify
from paramdb.ops.check import check

DOCS = [{"id": f"d{i}", "text": f"Fact {i}: the lighthouse of Orm{i} shines amber over the bay."} for i in range(4)]


def open_store(path, tiny_lm, embedder, **kwargs) -> ParamDB:
    return ParamDB.open(path, model=tiny_lm, embedder=embedder, **kwargs)


@pytest.fixture
def int8_db(store_path, tiny_lm, embedder):
    with ParamDB.open(store_path, create=True, model=tiny_lm, embedder=embedder, training=FAST_TRAINING,
                      adapter_dtype="int8") as db:
        db.insert(DOCS)
        yield db


@pytest.fixture
def fp16_store(tmp_path, tiny_lm, embedder):
    path = tmp_path / "fp16"
    with ParamDB.open(path, create=True, model=tiny_lm, embedder=embedder, training=FAST_TRAINING) as db:
        db.insert(DOCS)
    return path


def dtypes(db) -> dict[str, str]:
    with db.handle.store.blobs.reader() as r:
        return {doc_id: codec.adapter_dtype(r.adapter(key)) for _, doc_id, key in db.handle.store.meta.all_rows_keys()}


def adapters(store, tiny_lm, embedder) -> dict[str, dict[str, np.ndarray]]:
    with open_store(store, tiny_lm, embedder) as db, db.handle.store.blobs.reader() as r:
        return {doc_id: {n: np.array(t, np.float32) for n, t in codec.decode_tensors(r.adapter(key)).items()}
                for _, doc_id, key in db.handle.store.meta.all_rows_keys()}


def assert_within_int8_step(got: dict, want: dict) -> None:
    """Each converted tensor is within half an int8 step (absmax of its rank component / 254) of the original."""
    assert got.keys() == want.keys()
    for doc_id in want:
        for name, x in want[doc_id].items():
            axis = 1 if name.endswith("lora_A") else 0
            step = np.abs(x).max(axis=axis, keepdims=True) / 127
            assert np.all(np.abs(got[doc_id][name] - x) <= step / 2 * (1 + 1e-4) + 1e-12), (doc_id, name)


def test_a_store_created_int8_writes_int8_adapters_and_answers(int8_db):
    assert set(dtypes(int8_db).values()) == {"int8"}
    ans = int8_db.generate("Where does the lighthouse of Orm1 shine?", k=2, mode="prag", max_new_tokens=4)
    assert ans.hits and ans.timings["load_adapters"] >= 0
    factors = factors_for_ids(int8_db.handle.store, int8_db.handle.models.lm, ["d0"])[0]
    assert int8_db.handle.store.cache.get(int8_db.handle.store.meta.get(["d0"])[0]["blob_key"]) is factors   # cached
    assert all(torch.isfinite(a).all() and torch.isfinite(b).all() for a, b in factors)


def test_stats_give_the_adapter_dtype_and_all_adapter_bytes(int8_db):
    stats = int8_db.stats()
    with int8_db.handle.store.blobs.reader() as r:
        total = sum(len(r.adapter(k)) for _, _, k in int8_db.handle.store.meta.all_rows_keys())
    assert stats["adapter_dtype"] == "int8" and stats["adapter_bytes"] == total
    assert stats["adapter_bytes_per_row"] == round(total / len(DOCS))


def test_the_dtype_is_kept_in_the_config_and_fixed_at_creation(int8_db, store_path, tiny_lm, embedder):
    int8_db.close()
    with open_store(store_path, tiny_lm, embedder, adapter_dtype="int8") as db:     # the same: fine
        assert db.config.adapter_dtype == "int8"
    with pytest.raises(InvalidInput, match="fixed at creation.*paramdb compact"):
        open_store(store_path, tiny_lm, embedder, adapter_dtype="float16")


def test_check_repair_rebuilds_a_damaged_int8_row_as_int8(int8_db):
    key = int8_db.handle.store.meta.get(["d2"])[0]["blob_key"]
    raw = bytearray(int8_db.handle.store.blobs.get_adapter(key))
    raw[-3] ^= 0x40
    int8_db.handle.store.blobs.put({key: bytes(raw)}, {})
    report = check(int8_db.handle.store, int8_db.handle.models)
    assert not report.ok and [f.kind for f in report.findings if f.subject == "d2"] == ["adapter-checksum"]
    assert check(int8_db.handle.store, int8_db.handle.models, repair=True).ok
    assert dtypes(int8_db)["d2"] == "int8" and check(int8_db.handle.store, int8_db.handle.models).ok


def test_an_int8_store_backs_up_verifies_restores_and_copies_byte_for_byte(int8_db, store_path, tmp_path):
    backup(int8_db.handle.store, tmp_path / "b.tar")
    assert verify(tmp_path / "b.tar") == [] and verify(store_path) == []
    restore(tmp_path / "b.tar", tmp_path / "restored")
    copy_store(store_path, tmp_path / "copied")
    int8_db.close()
    want = blob_bytes(store_path)["adapters"]
    assert blob_bytes(tmp_path / "restored")["adapters"] == want == blob_bytes(tmp_path / "copied")["adapters"]


def test_compact_converts_an_fp16_store_within_the_int8_bound_and_new_rows_follow(fp16_store, tiny_lm, embedder):
    before = adapters(fp16_store, tiny_lm, embedder)
    with open_store(fp16_store, tiny_lm, embedder) as db:
        gen, rows = db.generation, db.list()
    report = compact(fp16_store, "int8")
    assert (report.rows, report.converted, report.damaged) == (4, 4, [])
    assert report.adapter_bytes_after < report.adapter_bytes_before
    assert_within_int8_step(adapters(fp16_store, tiny_lm, embedder), before)
    with open_store(fp16_store, tiny_lm, embedder) as db:
        assert db.list() == rows and db.generation > gen          # same rows; answers made before are stale
        assert db.config.adapter_dtype == "int8" and set(dtypes(db).values()) == {"int8"}
        assert all(f.kind == "index-stale" for f in check(db.handle.store, db.handle.models).findings)     # no orphan blob left
        db.insert({"id": "new", "text": "A new row after compacting."})
        assert dtypes(db)["new"] == "int8"
    assert compact(fp16_store, "int8").converted == 0             # rerun: nothing left to convert


def test_a_mixed_store_answers_with_float16_and_int8_adapters_together(fp16_store, tiny_lm, embedder):
    compact(fp16_store, "int8")
    compact(fp16_store, "float16", chunk=1)                       # back again, one row at a time ...
    with open_store(fp16_store, tiny_lm, embedder) as db:
        db.insert({"id": "mixed", "text": "Written in float16, beside int8 rows."})
    compact(fp16_store, "int8", chunk=2)
    with open_store(fp16_store, tiny_lm, embedder) as db:
        db.insert({"id": "late", "text": "Written in int8."})
        assert set(dtypes(db).values()) == {"int8"}
    with open_store(fp16_store, tiny_lm, embedder) as db:
        key = db.handle.store.meta.get(["late"])[0]["blob_key"]
        tensors = codec.decode_tensors(db.handle.store.blobs.get_adapter(key))
        db.handle.store.blobs.put({key: codec.encode_adapter(tensors, "float16")}, {})   # one float16 row among int8
        answers = db.generate_batch(["Where is Orm0?", "What was written late?"], k=3, max_new_tokens=3)
        assert len(answers) == 2 and check(db.handle.store, db.handle.models).ok


def test_compact_skips_and_names_a_damaged_row(fp16_store, tiny_lm, embedder):
    with open_store(fp16_store, tiny_lm, embedder) as db:
        key = db.handle.store.meta.get(["d1"])[0]["blob_key"]
        raw = bytearray(db.handle.store.blobs.get_adapter(key))
        raw[-1] ^= 0x01
        db.handle.store.blobs.put({key: bytes(raw)}, {})
    report = compact(fp16_store, "int8")
    assert report.damaged == ["d1"] and report.converted == 3
    with open_store(fp16_store, tiny_lm, embedder) as db:
        assert db.handle.store.blobs.get_adapter(key) == bytes(raw)      # left as it was, for check --repair
        assert check(db.handle.store, db.handle.models, repair=True).ok and dtypes(db)["d1"] == "int8"


def test_migrate_keeps_float16_adapters_then_compact_converts_them(tmp_path, tiny_lm, embedder):
    store = format1_copy(tmp_path / "old")
    old = blob_bytes(store)["adapters"]
    migrate(store)
    assert blob_bytes(store)["adapters"] == old                   # format 3 reads format 1's values as they are
    with open_store(store, tiny_lm, embedder) as db:
        assert db.config.adapter_dtype == "float16" and db.stats()["format_version"] == 3
        assert set(dtypes(db).values()) == {"float16"}
    assert compact(store, "int8").converted == len(old)
    with open_store(store, tiny_lm, embedder) as db:
        assert check(db.handle.store, db.handle.models).ok and set(dtypes(db).values()) == {"int8"}


def test_a_format2_store_migrates_to_format3_with_its_float16_adapters_unchanged(fp16_store, tiny_lm, embedder):
    """Format 2 as it was on disk: marker 2, blob format 1, a config without adapter_dtype."""
    url = meta_url_of(fp16_store)
    info = raw_info(url)
    config = json.loads(info["config"])
    del config["adapter_dtype"]
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        for key, value in (("config", {**config, "format_version": 2}), ("blob_format", 1)):
            conn.execute(sa.text("UPDATE store_info SET value = :v WHERE key = :k"), {"k": key, "v": json.dumps(value)})
    engine.dispose()
    (fp16_store / "paramdb.json").write_text(json.dumps({"format_version": 2, "meta_url": None}))
    old = blob_bytes(fp16_store)
    report = migrate(fp16_store)
    assert (report.format_before, report.format_after, report.blob_format_after) == (2, 3, 2)
    assert blob_bytes(fp16_store) == old and json.loads(raw_info(url)["config"])["adapter_dtype"] == "float16"
    with open_store(fp16_store, tiny_lm, embedder) as db:
        assert check(db.handle.store, db.handle.models).ok and len(factors_for_ids(db.handle.store, db.handle.models.lm, ["d0", "d3"])) == 2


# ------------------------------------------------------------------------------------------ the CLI
@pytest.fixture
def tiny_cli(monkeypatch, tiny_lm, embedder):
    real = commands.open_db
    monkeypatch.setattr(commands, "open_db", lambda path, create=False, **kw: real(
        path, create, **{**kw, "model": tiny_lm, "embedder": embedder}))


def test_cli_init_int8_and_stats_json(tmp_path, tiny_cli):
    result = CliRunner().invoke(main, ["init", str(tmp_path / "s"), "--adapter-dtype", "int8", "--epochs", "1"])
    assert result.exit_code == 0 and "int8 adapters" in result.output
    stats = json.loads(CliRunner().invoke(main, ["stats", str(tmp_path / "s"), "--json"]).output)
    assert (stats["adapter_dtype"], stats["adapter_bytes"], stats["adapter_bytes_per_row"]) == ("int8", 0, 0)


def test_cli_compact_reports_the_bytes_saved(fp16_store):
    result = CliRunner().invoke(main, ["compact", str(fp16_store), "--json"])
    report = json.loads(result.output)
    assert result.exit_code == 0 and report["converted"] == 4 and 0 < report["ratio"] < 1


@pytest.mark.parametrize("command", ["init", "compact"])
def test_cli_a_bad_adapter_dtype_is_one_line_and_changes_nothing(command, fp16_store, tmp_path, tiny_cli):
    target = tmp_path / "new" if command == "init" else fp16_store
    before = blob_bytes(fp16_store)
    result = CliRunner().invoke(main, [command, str(target), "--adapter-dtype", "int3"])
    assert result.exit_code == 2
    assert result.output == "error: unknown adapter dtype 'int3'; valid: float16, int8\n"
    assert not (tmp_path / "new").exists() and blob_bytes(fp16_store) == before


def test_compact_repoints_rows_in_a_postgresql_store(tmp_path, pg_url, tiny_lm, embedder):
    path = tmp_path / "pg"
    with ParamDB.open(path, create=True, model=tiny_lm, embedder=embedder, training=FAST_TRAINING,
                      meta_url=pg_url) as db:
        db.insert(DOCS[:2])
    assert compact(path, "int8").converted == 2
    with open_store(path, tiny_lm, embedder) as db:
        assert check(db.handle.store, db.handle.models).ok and set(dtypes(db).values()) == {"int8"}
