"""SQL metadata: transactional writes, generation counter and Chroma-style where filters."""
from __future__ import annotations

import pytest
from sqlalchemy.dialects import postgresql

from paramdb.errors import DuplicateId, InvalidFilter, InvalidInput, UnknownId
from paramdb.storage.meta import MetaStore, documents, where_clause


@pytest.fixture
def meta_url(any_meta_url) -> str:
    """Every test here runs on SQLite and on PostgreSQL (conftest: skipped without PARAMDB_TEST_PG_URL)."""
    return any_meta_url


@pytest.fixture
def meta(meta_url):
    m = MetaStore(meta_url)
    m.create_all()
    yield m
    m.close()


def row(i: str, key: str | None = None, **md) -> dict:
    return {"id": i, "text": f"text {i}", "metadata": md, "blob_key": key or f"blob-{i}", "created_at": 1.5}


def test_insert_get_roundtrip_with_json_metadata(meta):
    rowids = meta.insert([row("a", tag="x", n=3, nested={"l": [1, 2]}), row("b")])
    got = meta.get(["b", "a", "missing"])
    assert [g["id"] for g in got] == ["b", "a"]
    assert got[1] == {"rowid": rowids[0], "id": "a", "text": "text a",
                      "metadata": {"tag": "x", "n": 3, "nested": {"l": [1, 2]}}, "blob_key": "blob-a",
                      "created_at": 1.5, "adapter_kind": "trained"}
    assert [g["id"] for g in meta.get_by_rowids(rowids[::-1])] == ["b", "a"]


def test_duplicate_in_batch_raises_and_writes_nothing(meta):
    with pytest.raises(DuplicateId):
        meta.insert([row("a"), row("b"), row("a")])
    assert meta.count() == 0


def test_duplicate_of_stored_id_raises_and_writes_nothing(meta):
    meta.insert([row("a")])
    with pytest.raises(DuplicateId) as e:
        meta.insert([row("b"), row("a")])
    assert e.value.doc_id == "a"
    assert meta.count() == 1


def test_delete_unknown_raises_and_deletes_nothing(meta):
    meta.insert([row("a")])
    with pytest.raises(UnknownId):
        meta.delete(["a", "zzz"])
    assert meta.count() == 1


def test_delete_returns_rowid_and_blob_key(meta):
    (rid,) = meta.insert([row("a")])
    assert meta.delete(["a"]) == [(rid, "blob-a")]
    assert meta.count() == 0


def test_upsert_keeps_rowid_and_returns_old_blob_key(meta):
    (rid,) = meta.insert([row("a", key="old", v=1)])
    rowids, replaced = meta.upsert([row("a", key="new", v=2), row("b")])
    assert rowids[0] == rid and replaced == ["old"]
    got = meta.get(["a"])[0]
    assert got["blob_key"] == "new" and got["metadata"] == {"v": 2}
    assert meta.count() == 2


def test_upsert_rejects_repeated_id(meta):
    with pytest.raises(InvalidInput):
        meta.upsert([row("a"), row("a")])


def test_generation_increments_on_each_write(meta):
    g0 = meta.generation()
    meta.insert([row("a")])
    meta.upsert([row("a", key="k2")])
    meta.delete(["a"])
    assert meta.generation() == g0 + 3


def test_failed_write_does_not_bump_generation(meta):
    meta.insert([row("a")])
    g = meta.generation()
    with pytest.raises(DuplicateId):
        meta.insert([row("a")])
    assert meta.generation() == g


def test_rowids_are_not_reused_after_delete(meta):
    (rid,) = meta.insert([row("a")])
    meta.delete(["a"])
    assert meta.insert([row("b")])[0] > rid


def test_info_upsert_and_all_info(meta):
    meta.set_info("lora", {"r": 8})
    meta.set_info("lora", {"r": 16})
    assert meta.get_info("lora") == {"r": 16}
    assert meta.get_info("nope", "dflt") == "dflt"
    assert meta.all_info()["lora"] == {"r": 16}


def test_list_pages_in_rowid_order(meta):
    meta.insert([row(str(i)) for i in range(5)])
    assert [r["id"] for r in meta.list(limit=2, offset=1)] == ["1", "2"]
    assert meta.existing_ids(["1", "9"]) == {"1"}
    assert [k[1] for k in meta.all_rows_keys()] == ["0", "1", "2", "3", "4"]


def test_big_in_lists_are_chunked(meta):
    ids = [f"d{i}" for i in range(1200)]
    meta.insert([row(i) for i in ids])
    assert len(meta.get(ids)) == 1200 and len(meta.existing_ids(ids)) == 1200


def test_size_bytes_counts_sqlite_files_and_not_a_server(meta):
    meta.insert([row("a")])
    if meta.url.get_backend_name() == "sqlite":
        assert meta.size_bytes() > 0
    else:
        assert meta.size_bytes() == 0     # a server database is not ours to measure


@pytest.fixture
def filled(meta):
    meta.insert([row("a", color="red", n=1, ok=True), row("b", color="blue", n=5, ok=False),
                 row("c", color="red", n=10), row("d", n="ten", color=3)])
    return meta


def ids_for(meta, where) -> list[str]:
    return [r["id"] for r in meta.list(where=where)]


@pytest.mark.parametrize("where,expected", [
    ({"color": "red"}, ["a", "c"]),
    ({"color": {"$eq": "blue"}}, ["b"]),
    ({"color": {"$ne": "red"}}, ["b", "d"]),
    ({"n": {"$gt": 1}}, ["b", "c"]),
    ({"n": {"$gte": 5}}, ["b", "c"]),
    ({"n": {"$lt": 5}}, ["a"]),
    ({"n": {"$lte": 5.0}}, ["a", "b"]),
    ({"color": {"$in": ["blue", 3]}}, ["b", "d"]),
    ({"color": {"$nin": ["red"]}}, ["b", "d"]),
    ({"ok": True}, ["a"]),
    ({"ok": False}, ["b"]),
    ({"n": 1}, ["a"]),
    ({"$and": [{"color": "red"}, {"n": {"$gt": 2}}]}, ["c"]),
    ({"$or": [{"color": "blue"}, {"n": 10}]}, ["b", "c"]),
    ({"color": "red", "n": 1}, ["a"]),
])
def test_where_operator(filled, where, expected):
    assert ids_for(filled, where) == expected
    assert filled.count(where) == len(expected)


def test_where_does_not_mix_types(filled):
    assert ids_for(filled, {"n": 0}) == []  # 'ten' must not cast to 0
    assert ids_for(filled, {"ok": 1}) == []  # true is not the number 1


def test_rowids_matching(filled):
    assert len(filled.rowids_matching({"color": "red"})) == 2


@pytest.mark.parametrize("where,part", [
    ({"n": {"$foo": 1}}, "'$foo'"),
    ({"$not": [{"n": 1}]}, "'$not'"),
    ({"n": None}, "None"),
    ({"n": [1, 2]}, "[1, 2]"),
    ({"n": {"$gt": "x"}}, "'x'"),
    ({"n": {"$in": 3}}, "$in"),
    ({"$and": {"n": 1}}, "$and"),
    ({"n": {}}, "empty"),
    ([{"n": 1}], "dict"),
])
def test_invalid_filter_names_the_bad_part(filled, where, part):
    with pytest.raises(InvalidFilter) as e:
        filled.count(where)
    assert part in str(e.value) and "\n" not in str(e.value)


def test_where_compiles_for_postgresql():
    where = {"$or": [{"n": {"$gt": 1}}, {"ok": True}, {"c": {"$nin": ["x", 2]}}]}
    sql = str(where_clause(documents, where).compile(dialect=postgresql.dialect()))
    assert "json_typeof" in sql
