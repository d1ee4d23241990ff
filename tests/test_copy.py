"""`paramdb copy`: a new store with every row, store_info value, rowid counter and adapter byte of the source,
across SQLite and PostgreSQL; refused onto anything that exists; a failed copy leaves nothing behind."""
from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from paramdb import ParamDB
from paramdb.cli import main
from paramdb.errors import FormatError, InvalidInput, StoreExists
from paramdb.ops.copy import copy_store
from paramdb.ops.migrate import migrate
from paramdb.storage import rowids
from stores import blob_bytes, format1_copy, meta_url_of, raw_info, raw_rows


def counter(url: str) -> int:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        value = rowids.highest_issued(conn)
    engine.dispose()
    return value


def snapshot(store) -> dict:
    url = meta_url_of(store)
    return {"rows": raw_rows(url), "info": raw_info(url), "counter": counter(url), "blobs": blob_bytes(store)}


@pytest.fixture
def source(tmp_path, tiny_lm, embedder):
    """The migrated format-1 fixture after more writes: the rowid counter (7) is above the largest rowid."""
    store = format1_copy(tmp_path / "src")
    migrate(store)
    with ParamDB.open(store, model=tiny_lm, embedder=embedder) as db:
        db.insert([{"id": "nul-free", "text": "Text with ünïcode, 'quotes' and \"double\" ones.",
                    "metadata": {"f": 0.1 + 0.2, "big": 2 ** 53 + 1, "neg": -1e-300, "s": "\u2603"}},
                   {"id": "temp", "text": "deleted again"}])
        db.delete("temp")
    return store


def test_round_trip_sqlite_postgresql_sqlite_is_bit_for_bit(source, tmp_path, pg_url, tiny_lm, embedder):
    before = snapshot(source)
    assert before["counter"] == 7 and max(r["rowid"] for r in before["rows"]) == 6
    on_pg = copy_store(source, tmp_path / "pg", meta_url=pg_url)
    assert on_pg.rows == 5 and on_pg.adapters == 5
    assert json.loads((tmp_path / "pg" / "paramdb.json").read_text())["meta_url"] == pg_url
    assert not (tmp_path / "pg" / "meta.sqlite").exists()
    assert snapshot(tmp_path / "pg") == before
    copy_store(tmp_path / "pg", tmp_path / "back")
    assert snapshot(tmp_path / "back") == before
    for store in (tmp_path / "pg", tmp_path / "back"):
        with ParamDB.open(store, model=tiny_lm, embedder=embedder) as db:
            assert db.query("moonrind glass Tessaly", k=1)[0].id == "zorvath"
            assert db.generate("Who invented moonrind glass?", k=1, max_new_tokens=2).hits
            db.insert({"id": "after", "text": "written to the copy"})
        assert {r["id"]: r["rowid"] for r in raw_rows(meta_url_of(store))}["after"] == 8  # never 7 or less
    assert snapshot(source) == before                                  # the source is untouched


def test_sqlite_to_sqlite_copy_is_bit_for_bit(source, tmp_path):
    before = snapshot(source)
    report = copy_store(source, tmp_path / "copy")
    assert report.rows == 5 and snapshot(tmp_path / "copy") == before


def test_copy_refuses_an_existing_destination_an_old_source_and_itself(source, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    with pytest.raises(StoreExists):
        copy_store(source, tmp_path / "busy")
    copy_store(source, tmp_path / "one")
    with pytest.raises(StoreExists):
        copy_store(source, tmp_path / "one")
    with pytest.raises(InvalidInput, match="onto itself"):
        copy_store(source, source)
    with pytest.raises(FormatError, match="paramdb migrate"):
        copy_store(format1_copy(tmp_path / "old"), tmp_path / "two")
    assert not (tmp_path / "two").exists()
    (tmp_path / "empty").mkdir()                                    # an empty folder is a fine target
    copy_store(source, tmp_path / "empty")


def test_copy_refuses_a_database_that_already_holds_a_store(source, tmp_path, pg_url):
    copy_store(source, tmp_path / "first", meta_url=pg_url)
    with pytest.raises(StoreExists, match="already holds"):
        copy_store(source, tmp_path / "second", meta_url=pg_url)
    assert not (tmp_path / "second").exists()
    assert len(raw_rows(pg_url)) == 5                               # the first copy is unharmed


def test_a_failed_copy_leaves_nothing_behind(source, tmp_path, pg_url):
    engine = sa.create_engine(f"sqlite:///{source / 'meta.sqlite'}")
    with engine.begin() as conn:         # PostgreSQL refuses NUL in text; SQLite stores it
        conn.execute(sa.text("UPDATE documents SET text = :t WHERE id = 'zorvath'"), {"t": "a\x00b"})
    engine.dispose()
    with pytest.raises(InvalidInput, match="cannot copy the metadata"):
        copy_store(source, tmp_path / "pg", meta_url=pg_url)
    assert not (tmp_path / "pg").exists()
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        assert sa.inspect(conn).get_table_names() == []
    engine.dispose()


def test_cli_copy(source, tmp_path):
    res = CliRunner().invoke(main, ["copy", str(source), str(tmp_path / "c"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["rows"] == 5 and out["meta_url"].startswith("sqlite:///")
    res = CliRunner().invoke(main, ["copy", str(source), str(tmp_path / "c")])
    assert res.exit_code == 4 and res.output.startswith("error: ") and "\n" == res.output[-1]
    res = CliRunner().invoke(main, ["copy", str(tmp_path / "nowhere"), str(tmp_path / "d")])
    assert res.exit_code == 4 and "no store at" in res.output
