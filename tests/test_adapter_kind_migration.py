"""Format 3: `documents.adapter_kind`; `paramdb migrate` records every earlier row as trained."""
from __future__ import annotations

import sqlite3

from paramdb import ParamDB
from paramdb.config import FORMAT_VERSION
from paramdb.ops.migrate import migrate
from stores import format1_copy, meta_url_of, raw_rows


def kinds(store) -> dict[str, str]:
    con = sqlite3.connect(store / "meta.sqlite")
    try:
        return dict(con.execute("SELECT id, adapter_kind FROM documents").fetchall())
    finally:
        con.close()


def test_migrate_records_every_existing_row_as_trained(tmp_path, tiny_lm, embedder):
    store = format1_copy(tmp_path / "old")
    assert migrate(store).format_after == FORMAT_VERSION == 3
    assert set(kinds(store).values()) == {"trained"} and len(kinds(store)) == 4
    with ParamDB.open(store, model=tiny_lm, embedder=embedder) as db:
        assert db.stats()["adapters"] == {"trained": 4, "translated": 0, "imported": 0, "pending": 0}
        assert db.get("zorvath").adapter_kind == "trained"


def test_migrate_fills_rows_an_older_writer_added_without_a_kind(tmp_path):
    store = format1_copy(tmp_path / "old")
    migrate(store)
    con = sqlite3.connect(store / "meta.sqlite")
    con.execute("UPDATE documents SET adapter_kind = NULL WHERE id = 'plain'")   # as a format-2 writer leaves it
    con.commit()
    con.close()
    migrate(store)
    assert kinds(store)["plain"] == "trained"
    assert len(raw_rows(meta_url_of(store))) == 4


def test_a_row_without_a_kind_reads_and_counts_as_trained_before_migrate_fills_it(tmp_path, tiny_lm, embedder):
    store = format1_copy(tmp_path / "old")
    migrate(store)
    con = sqlite3.connect(store / "meta.sqlite")
    con.execute("UPDATE documents SET adapter_kind = NULL WHERE id = 'plain'")   # as a format-2 writer leaves it
    con.commit()
    con.close()
    with ParamDB.open(store, model=tiny_lm, embedder=embedder) as db:
        assert db.get("plain").adapter_kind == "trained"
        assert {d.adapter_kind for d in db.list()} == {"trained"}
        assert {h.adapter_kind for h in db.query("plain", k=4)} == {"trained"}
        assert db.stats()["adapters"] == {"trained": 4, "translated": 0, "imported": 0, "pending": 0}
    assert kinds(store)["plain"] is None                       # reading wrote nothing
