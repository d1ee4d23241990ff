"""Hostile input: each is refused with one InvalidInput line naming the culprit, before any work,
and leaves the store as it was; none reaches SQL, LMDB or the model as something they choke on."""
from __future__ import annotations

import json

import pytest

from conftest import FAST_TRAINING
from paramdb import InvalidFilter, InvalidInput, ParamDB

DOCS = [{"id": "cats", "text": "Cats sleep most of the day.", "metadata": {"year": 2015, "tag": "pets"}},
        {"id": "dogs", "text": "Dogs bark at the mailman.", "metadata": {"year": 2021, "tag": "pets"}}]


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_lm, embedder):
    with ParamDB.open(tmp_path_factory.mktemp("bad") / "store", create=True, model=tiny_lm,
                      embedder=embedder, training=FAST_TRAINING) as database:
        database.insert(DOCS)
        yield database


@pytest.fixture
def unchanged(store):
    before = (len(store), [d.id for d in store.list()], store.handle.store.blobs.count("adapters"), store.generation)
    yield store
    assert (len(store), [d.id for d in store.list()], store.handle.store.blobs.count("adapters"),
            store.generation) == before


def refused(excinfo, *fragments: str) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    for f in fragments:
        assert f in msg, (f, msg)
    return msg


# ---------------------------------------------------------------- metadata (item 2)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
def test_a_non_finite_number_nested_in_metadata_is_refused(unchanged, value):
    with pytest.raises(InvalidInput) as err:
        unchanged.insert({"id": "m", "text": "t", "metadata": {"a": {"b": [1, value]}}})
    refused(err, "document 1", "metadata.a.b[1]", "not a finite number")


def test_a_value_that_is_not_json_nested_in_metadata_is_refused(unchanged):
    with pytest.raises(InvalidInput) as err:
        unchanged.insert({"id": "m", "text": "t", "metadata": {"a": {"when": object()}}})
    refused(err, "metadata.a.when", "not a JSON value")


def test_metadata_nested_too_deeply_is_refused(unchanged):
    deep: dict = {}
    node = deep
    for _ in range(3000):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(InvalidInput) as err:
        unchanged.insert({"id": "m", "text": "t", "metadata": deep})
    refused(err, "nested more than 32 levels")


def test_an_integer_beyond_64_bits_in_metadata_is_refused(unchanged):
    with pytest.raises(InvalidInput) as err:
        unchanged.insert({"id": "m", "text": "t", "metadata": {"n": 10 ** 20}})
    refused(err, "metadata.n", "beyond 64 bits")


@pytest.mark.parametrize("key", ['a"b', "a\\b", "a\x00b"], ids=["quote", "backslash", "nul"])
def test_a_metadata_key_no_filter_could_name_is_refused(unchanged, key):
    with pytest.raises(InvalidInput) as err:
        unchanged.insert({"id": "m", "text": "t", "metadata": {key: 1}})
    refused(err, "document 1", repr(key))


def test_filters_still_work_after_nested_metadata_is_stored(store):
    store.insert({"id": "nested", "text": "Owls hunt at night.", "metadata": {"a": {"b": 1.5}, "year": 1999}})
    try:
        assert [d.id for d in store.list(where={"year": 1999})] == ["nested"]
        assert json.loads(json.dumps(store.get("nested").metadata)) == {"a": {"b": 1.5}, "year": 1999}
    finally:
        store.delete("nested")


# ---------------------------------------------------------------- ids and text (item 9)
@pytest.mark.parametrize("doc_id", ["a\x00b", "line\nbreak", "tab\there", "bell\x07"], ids=["nul", "nl", "tab", "bel"])
def test_an_id_with_a_control_character_is_refused(unchanged, doc_id):
    with pytest.raises(InvalidInput) as err:
        unchanged.insert({"id": doc_id, "text": "t"})
    refused(err, "document 1", "control character")


def test_a_lone_surrogate_in_an_id_is_refused(unchanged):
    with pytest.raises(InvalidInput) as err:
        unchanged.insert({"id": "x\udcff", "text": "t"})
    refused(err, "document 1: id", "lone surrogate")


def test_a_lone_surrogate_in_a_text_is_refused_before_the_model_loads(tmp_path, embedder, tiny_lm, monkeypatch):
    with ParamDB.open(tmp_path / "s", create=True, model=tiny_lm, embedder=embedder, training=FAST_TRAINING):
        pass

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr("paramdb.engine.models.load_model", no_model)
    with ParamDB.open(tmp_path / "s", embedder=embedder) as db:
        with pytest.raises(InvalidInput) as err:
            db.insert([{"id": "ok", "text": "fine"}, {"id": "bad", "text": "caf\ud800"}])
        refused(err, "document 2: text", "lone surrogate")
        assert len(db) == 0


@pytest.mark.parametrize("docs", [5, None, b"bytes", 1.5], ids=["int", "None", "bytes", "float"])
def test_insert_of_something_that_is_not_documents_is_refused(unchanged, docs):
    with pytest.raises(InvalidInput) as err:
        unchanged.insert(docs)
    refused(err, "insert takes a str, dict or Document", type(docs).__name__)


@pytest.mark.parametrize("ids", [None, 5, b"cats", [None], ["cats", 3]], ids=["None", "int", "bytes", "[None]", "mixed"])
def test_delete_of_something_that_is_not_ids_is_refused(unchanged, ids):
    with pytest.raises(InvalidInput) as err:
        unchanged.delete(ids)
    refused(err, "ids must be")


def test_get_of_an_id_with_a_lone_surrogate_is_refused(store):
    with pytest.raises(InvalidInput) as err:
        store.get("cats\udc80")
    refused(err, "lone surrogate")


# ---------------------------------------------------------------- query and generate arguments (item 9)
@pytest.mark.parametrize("k", [1.5, "3", True, 0, None], ids=["float", "str", "bool", "zero", "None"])
def test_query_k_must_be_a_positive_integer(store, k):
    with pytest.raises(InvalidInput) as err:
        store.query("cats", k=k)
    refused(err, "k must be")


def test_query_text_with_a_lone_surrogate_is_refused(store):
    with pytest.raises(InvalidInput) as err:
        store.query("cat\udcff")
    refused(err, "query text", "lone surrogate")


@pytest.mark.parametrize("questions,fragment", [("abc", "got str"), ([], "empty list"), (None, "got NoneType"),
                                                (["ok", ""], "question is empty")], ids=["str", "empty", "None", "blank"])
def test_generate_batch_needs_a_non_empty_list_of_questions(store, questions, fragment):
    with pytest.raises(InvalidInput) as err:
        store.generate_batch(questions)
    refused(err, fragment)


@pytest.mark.parametrize("n", [0, -1, 2.5], ids=["zero", "negative", "float"])
def test_generate_max_new_tokens_must_be_a_positive_integer(store, n):
    with pytest.raises(InvalidInput) as err:
        store.generate("Do cats sleep?", max_new_tokens=n)
    refused(err, "max_new_tokens")


# ---------------------------------------------------------------- where filters (item 9)
def deep_where(levels: int) -> dict:
    where: dict = {"year": 2015}
    for _ in range(levels):
        where = {"$and": [where]}
    return where


@pytest.mark.parametrize("where,fragment", [
    ({"year": 10 ** 20}, "beyond 64 bits"),
    ({"year": {"$gt": float("nan")}}, "not a finite number"),
    ({"a\\b": 1}, "backslash"),
    ({"tag": "pe\udcfft"}, "lone surrogate"),
    (deep_where(3000), "nested more than"),
], ids=["int>64bit", "nan", "backslash-key", "surrogate", "3000-deep"])
def test_a_where_filter_sql_cannot_run_is_refused(store, where, fragment):
    with pytest.raises(InvalidFilter) as err:
        store.query("cats", where=where)
    refused(err, fragment)


def test_a_where_filter_nested_a_little_still_works(store):
    assert [h.id for h in store.query("cats", k=5, where=deep_where(20))] == ["cats"]
