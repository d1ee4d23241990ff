"""Migrations: Alembic owns the schema, `paramdb migrate` upgrades the format-1 fixture store (on SQLite and
PostgreSQL) after which every operation works, an old store is refused with a hint, a newer one too."""
from __future__ import annotations

import json
import sqlite3

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner

from conftest import META_BACKENDS, pg_schema_url
from paramdb import ParamDB
from paramdb.cli import main
from paramdb.config import FORMAT_VERSION
from paramdb.errors import FormatError
from paramdb.ops.migrate import migrate
from paramdb.storage import schema
from paramdb.storage.codec import BLOB_FORMAT
from paramdb.storage.hashes import text_sha256
from paramdb.storage.meta import MetaStore, metadata
from paramdb.engine.adapters import factors_for_ids
from stores import (FORMAT1_EXPECTED, FORMAT1_STORE, blob_sha256, expected_rows, format1_copy, format1_on,
                    meta_url_of, parsed, raw_info, raw_rows)


@pytest.fixture(params=META_BACKENDS)
def old_store(request, tmp_path):
    """A private format-1 store: the committed fixture itself, or the same rows with PostgreSQL metadata."""
    if request.param == "sqlite":
        yield format1_copy(tmp_path / "old")
    else:
        with pg_schema_url() as url:
            yield format1_on(tmp_path / "old", url)


def test_fixture_is_format1_and_made_by_the_tiny_test_model(tiny_lm):
    assert json.loads((FORMAT1_STORE / "paramdb.json").read_text())["format_version"] == 1
    assert FORMAT1_EXPECTED["model_fingerprint"] == tiny_lm.fingerprint, \
        "conftest's tiny model changed: the fixture's adapters no longer fit it"
    assert blob_sha256(FORMAT1_STORE) == FORMAT1_EXPECTED["blob_sha256"]


def test_baseline_revision_reproduces_the_format1_schema_exactly(tmp_path):
    def ddl(path):
        con = sqlite3.connect(path)
        out = dict(con.execute("SELECT name, sql FROM sqlite_master WHERE name IN ('documents', 'store_info')"))
        con.close()
        return out

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'm.sqlite'}")
    with engine.begin() as conn:
        command.upgrade(schema.alembic_config(conn), schema.BASELINE)
    engine.dispose()
    assert ddl(tmp_path / "m.sqlite") == ddl(FORMAT1_STORE / "meta.sqlite")


def test_the_model_matches_the_migrated_schema(any_meta_url):
    meta = MetaStore(any_meta_url)
    meta.create_all()
    with meta.transaction() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        assert schema.revision(conn) == schema.head()
    meta.close()


def test_opening_an_old_store_says_to_migrate(old_store, tiny_lm, embedder):
    with pytest.raises(FormatError) as e:
        ParamDB.open(old_store, model=tiny_lm, embedder=embedder)
    assert f"run `paramdb migrate {old_store}`" in str(e.value) and "format 1" in str(e.value)
    with pytest.raises(FormatError):            # a metadata URL given to open does not skip the check
        ParamDB.open(old_store, model=tiny_lm, embedder=embedder, meta_url=meta_url_of(old_store))


def test_cli_refuses_an_old_store_with_exit_5_then_migrates_it(tmp_path):
    store = format1_copy(tmp_path / "old")
    res = CliRunner().invoke(main, ["ls", str(store)])
    assert res.exit_code == 5 and f"run `paramdb migrate {store}`" in res.output
    res = CliRunner().invoke(main, ["migrate", str(store)])
    assert res.exit_code == 0, res.output
    assert f"from format 1 to {FORMAT_VERSION}" in res.output and "4 rows verified" in res.output
    res = CliRunner().invoke(main, ["migrate", str(store), "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["changed"] is False


def test_migrate_then_every_operation_works(old_store, tiny_lm, embedder):
    report = migrate(old_store)
    assert (report.format_before, report.format_after) == (1, FORMAT_VERSION)
    assert (report.schema_before, report.schema_after) == (schema.BASELINE, schema.head())
    assert report.rows == 4 and report.damaged == [] and report.changed
    url = meta_url_of(old_store)
    rows = raw_rows(url)
    assert parsed(rows) == expected_rows()                         # every row exactly as it was
    assert all(r["text_sha256"] == text_sha256(r["text"]) for r in rows)
    assert blob_sha256(old_store) == FORMAT1_EXPECTED["blob_sha256"]  # every adapter bit for bit
    info = raw_info(url)
    assert json.loads(info["blob_format"]) == BLOB_FORMAT
    assert json.loads(info["generation"]) == FORMAT1_EXPECTED["generation"]
    config = json.loads(info["config"])
    assert config["format_version"] == FORMAT_VERSION and config["embedder"] == "default"

    with ParamDB.open(old_store, model=tiny_lm, embedder=embedder) as db:
        assert len(db) == 4 and db.stats()["format_version"] == FORMAT_VERSION
        assert db.get("ondrel").metadata["unicode"] == "Ærøskøbing"
        assert [d.id for d in db.list(where={"src": "wiki"})] == ["zorvath", "ondrel"]
        assert db.count({"year": {"$gt": 1800}}) == 2
        assert db.query("moonrind glass Tessaly", k=1)[0].id == "zorvath"
        assert db.generate("Who invented moonrind glass?", k=2, mode="prag", max_new_tokens=4).hits
        assert len(factors_for_ids(db.handle.store, db.handle.models.lm, ["zorvath", "marrowby", "ondrel", "plain"])) == 4
        db.insert({"id": "new", "text": "Quillane glass glows under a new moon.", "metadata": {"src": "wiki"}})
        db.upsert({"id": "plain", "text": "Plain, now replaced.", "metadata": {"v": 2}})
        db.delete("marrowby")
        assert sorted(d.id for d in db.list()) == ["new", "ondrel", "plain", "zorvath"]
        assert db.query("Quillane glass new moon", k=1, method="bm25")[0].id == "new"
    rows = {r["id"]: r for r in raw_rows(url)}
    assert rows["new"]["rowid"] == 6          # the deleted fixture row 5 is never reused
    assert rows["plain"]["rowid"] == 4 and rows["plain"]["text_sha256"] == text_sha256("Plain, now replaced.")
    assert rows["new"]["text_sha256"] == text_sha256("Quillane glass glows under a new moon.")


def test_migrate_is_idempotent_and_backfills_rows_an_old_writer_added(tmp_path):
    store = format1_copy(tmp_path / "old")
    url = meta_url_of(store)
    meta = MetaStore(url)
    meta.upgrade_schema()          # as if a migrate was killed after its SQL step, leaving format 1 ...
    meta.close()
    con = sqlite3.connect(store / "meta.sqlite")   # ... and a format-1 writer then added a row
    con.execute("INSERT INTO documents (id, text, metadata, blob_key, created_at) "
                "VALUES ('late', 'added by an old writer', '{}', 'be69587cad434581bfc164366e232d61', 2.0)")
    con.commit()
    con.close()
    first = migrate(store)
    assert first.schema_before == first.schema_after == schema.head() and first.format_before == 1
    rows = {r["id"]: r for r in raw_rows(url)}
    assert rows["late"]["text_sha256"] == text_sha256("added by an old writer")
    again = migrate(store)
    assert not again.changed and again.rows == 5
    assert raw_rows(url) == list(rows.values())


def test_migrate_reports_a_damaged_adapter_and_still_migrates(tmp_path):
    store = format1_copy(tmp_path / "old")
    key = FORMAT1_EXPECTED["rows"][0]["blob_key"]
    from paramdb.storage.blobs import BlobStore
    with BlobStore(store / "blobs.lmdb") as blobs:
        raw = bytearray(blobs.get_adapter(key))
        raw[-1] ^= 0xFF
        blobs.put({key: bytes(raw)}, {})
    report = migrate(store)
    assert report.damaged == ["zorvath"] and report.format_after == FORMAT_VERSION
    res = CliRunner().invoke(main, ["migrate", str(store)])
    assert res.exit_code == 0 and "paramdb check" in res.output and "zorvath" in res.output


def test_a_newer_store_is_refused_by_open_and_by_migrate(tmp_path, tiny_lm, embedder):
    store = format1_copy(tmp_path / "new")
    migrate(store)
    (store / "paramdb.json").write_text(json.dumps({"format_version": FORMAT_VERSION + 1, "meta_url": None}))
    for attempt in (lambda: ParamDB.open(store, model=tiny_lm, embedder=embedder), lambda: migrate(store)):
        with pytest.raises(FormatError) as e:
            attempt()
        assert "upgrade ParamDB" in str(e.value)


def test_an_unknown_schema_revision_is_refused(tmp_path):
    store = format1_copy(tmp_path / "old")
    migrate(store)
    con = sqlite3.connect(store / "meta.sqlite")
    con.execute("UPDATE alembic_version SET version_num = '9999'")
    con.commit()
    con.close()
    with pytest.raises(FormatError, match="revision '9999'.*upgrade ParamDB"):
        migrate(store)


def test_new_stores_are_at_the_head_revision_with_text_hashes(db):
    db.insert({"id": "a", "text": "some text"})
    url = meta_url_of(db.path)
    assert raw_rows(url)[0]["text_sha256"] == text_sha256("some text")
    assert json.loads(raw_info(url)["blob_format"]) == BLOB_FORMAT
    with db.handle.store.meta.transaction() as conn:
        assert schema.revision(conn) == schema.head()
