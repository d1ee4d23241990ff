"""The ParamDB API end to end on the tiny model: insert, read, query, delete, reopen, generate."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import safetensors.numpy
import torch

from conftest import FAST_TRAINING, make_tiny_lm
from paramdb import Answer, Document, ModelMismatch, ParamDB, UnknownId
from paramdb.errors import InvalidInput
from paramdb.config import MODES, adapter_weight_for
from paramdb.engine.adapters import merged
from paramdb.knowledge.lora import side_path
from paramdb.storage.codec import encode_vector
from paramdb.storage.meta import MetaStore
from paramdb.types import InsertReport

DOCS = [
    {"id": "freedonia", "text": "Zorbel is the capital of Freedonia. Freedonia exports violins.",
     "metadata": {"topic": "geo", "year": 1990}},
    {"id": "cats", "text": "Cats sleep most of the day and purr when they are content.",
     "metadata": {"topic": "animals", "year": 2015, "pet": True}},
    {"id": "dogs", "text": "Dogs bark at the mailman every morning.",
     "metadata": {"topic": "animals", "year": 2021, "pet": True}},
    {"id": "rust", "text": "Rust is a programming language without a garbage collector.",
     "metadata": {"topic": "code", "year": 2010}},
]
TIMING_KEYS = {"retrieve", "load_adapters", "generate", "shorten"}


@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny_lm, embedder):
    """One store holding DOCS, shared by the tests that only read."""
    with ParamDB.open(tmp_path_factory.mktemp("library") / "store", create=True, model=tiny_lm,
                      embedder=embedder, training=FAST_TRAINING) as database:
        database.insert(DOCS)
        yield database


def ids_of(hits) -> list[str]:
    return [h.id for h in hits]


# ---------------------------------------------------------------- writing and reading rows
def test_insert_accepts_str_dict_and_document_and_returns_ids_in_order(db):
    ids = db.insert(["A plain string about oak trees.",
                     {"id": "d2", "text": "A dict about pine trees.", "metadata": {"n": 2}},
                     Document(text="A Document about elm trees.", id="d3")])
    assert ids[1:] == ["d2", "d3"]
    assert len(ids[0]) == 32 and int(ids[0], 16) >= 0          # a generated uuid4 hex
    assert [d.id for d in db.list()] == ids
    assert db.get(ids[0]).text == "A plain string about oak trees."


def test_local_insert_returns_the_same_report_type_as_ray_with_nothing_skipped_or_failed(db):
    report = db.insert([{"id": "r1", "text": "A report about birch trees."}])
    assert isinstance(report, InsertReport) and report.ids == ["r1"] == list(report)
    assert report.skipped == [] and report.failed == []


def test_get_returns_the_stored_text_and_metadata(library):
    doc = library.get("dogs")
    assert (doc.id, doc.text, doc.metadata) == ("dogs", DOCS[2]["text"], DOCS[2]["metadata"])


def test_len_counts_the_stored_documents(library):
    assert len(library) == len(DOCS)


# ---------------------------------------------------------------- query
@pytest.mark.parametrize("question, want", [("What is the capital of Freedonia?", "freedonia"),
                                            ("Which animal purrs?", "cats"),
                                            ("Who barks at the mailman?", "dogs"),
                                            ("Which language has no garbage collector?", "rust")])
def test_query_returns_the_matching_document_first(library, question, want):
    hits = library.query(question, k=len(DOCS))
    assert hits[0].id == want
    assert hits[0].text == library.get(want).text and hits[0].metadata == library.get(want).metadata
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


@pytest.mark.parametrize("k, n", [(1, 1), (2, 2), (10, len(DOCS))])
def test_query_returns_at_most_k_hits(library, k, n):
    assert len(library.query("animals", k=k)) == n


@pytest.mark.parametrize("where, want", [
    ({"topic": "animals"}, {"cats", "dogs"}),
    ({"topic": {"$ne": "animals"}}, {"freedonia", "rust"}),
    ({"year": {"$gt": 2012}}, {"cats", "dogs"}),
    ({"year": {"$lte": 2010}}, {"freedonia", "rust"}),
    ({"topic": {"$in": ["geo", "code"]}}, {"freedonia", "rust"}),
    ({"topic": {"$nin": ["geo", "code"]}}, {"cats", "dogs"}),
    ({"$and": [{"pet": True}, {"year": {"$lt": 2020}}]}, {"cats"}),
    ({"$or": [{"topic": "geo"}, {"year": {"$gte": 2021}}]}, {"freedonia", "dogs"}),
    ({"topic": "nothing"}, set()),
])
def test_query_where_filter_keeps_only_matching_documents(library, where, want):
    assert set(ids_of(library.query("capital of Freedonia", k=10, where=where))) == want


def test_query_ranks_within_the_filter(library):
    hits = library.query("What is the capital of Freedonia?", k=1, where={"topic": "code"})
    assert ids_of(hits) == ["rust"]


# ---------------------------------------------------------------- delete and upsert
def test_delete_removes_the_document_from_get_query_and_len(db):
    db.insert([{"id": "a", "text": "Apples grow on trees."}, {"id": "b", "text": "Bananas are yellow."}])
    assert db.delete("a") == 1
    assert len(db) == 1 and "a" not in db
    with pytest.raises(UnknownId):
        db.get("a")
    assert ids_of(db.query("Apples grow on trees.", k=10)) == ["b"]


def test_upsert_replaces_text_and_metadata_and_keeps_one_row(db):
    db.insert({"id": "a", "text": "Apples grow on trees.", "metadata": {"v": 1}})
    assert db.upsert({"id": "a", "text": "Bananas are yellow.", "metadata": {"v": 2}}) == ["a"]
    assert len(db) == 1
    assert (db.get("a").text, db.get("a").metadata) == ("Bananas are yellow.", {"v": 2})
    hits = db.query("yellow bananas", k=10)
    assert [(h.id, h.text) for h in hits] == [("a", "Bananas are yellow.")]
    assert db.handle.store.blobs.count("adapters") == db.handle.store.blobs.count("embeddings") == 1    # the old blobs are gone


# ---------------------------------------------------------------- reopening and the derived index
def test_reopening_the_store_preserves_rows_and_query_results(db, store_path, tiny_lm, embedder):
    db.insert(DOCS)
    rows, hits = db.list(), db.query("Which animal purrs?", k=3)
    db.close()
    with ParamDB.open(store_path, model=tiny_lm, embedder=embedder) as again:
        assert again.list() == rows
        reopened = again.query("Which animal purrs?", k=3)
        assert ids_of(reopened) == ids_of(hits)
        np.testing.assert_allclose([h.score for h in reopened], [h.score for h in hits], atol=1e-5)
        assert again.config.training.rank == FAST_TRAINING["rank"]


def test_missing_index_file_is_rebuilt_on_open(db, store_path, tiny_lm, embedder):
    db.insert(DOCS)
    db.close()
    (store_path / "vectors.hnsw").unlink()
    with ParamDB.open(store_path, model=tiny_lm, embedder=embedder) as again:
        assert ids_of(again.query("Who barks at the mailman?", k=1)) == ["dogs"]
        assert len(again.query("anything", k=10)) == len(DOCS)
    assert (store_path / "vectors.hnsw").exists()


def test_index_file_of_an_older_generation_is_rebuilt_on_open(db, store_path, tiny_lm, embedder):
    db.insert(DOCS[:2])
    saved = store_path.parent / "old-index"
    saved.mkdir()
    for name in ("vectors.hnsw", "vectors.hnsw.json"):
        shutil.copy(store_path / name, saved / name)
    db.insert(DOCS[2:])
    db.close()
    for name in ("vectors.hnsw", "vectors.hnsw.json"):          # an index saved before the last write
        shutil.copy(saved / name, store_path / name)
    with ParamDB.open(store_path, model=tiny_lm, embedder=embedder) as again:
        assert ids_of(again.query("Who barks at the mailman?", k=1)) == ["dogs"]
        assert len(again.query("anything", k=10)) == len(DOCS)


def test_open_index_notices_a_row_written_by_another_writer(db, embedder):
    db.insert(DOCS[:2])
    db.query("Who barks at the mailman?", k=10)                # the index is now loaded in memory
    other = MetaStore(db.handle.store.meta.url)                               # another writer: its own SQL connection
    key = "other-writer-blob"
    adapter = db.handle.store.blobs.get_adapter(db.handle.store.meta.get(["cats"])[0]["blob_key"])
    db.handle.store.blobs.put({key: adapter}, {key: encode_vector(embedder.embed([DOCS[2]["text"]])[0])})
    other.insert([{"id": "dogs", "text": DOCS[2]["text"], "metadata": {}, "blob_key": key, "created_at": 0.0}])
    other.close()
    assert ids_of(db.query("Who barks at the mailman?", k=1)) == ["dogs"]


def test_two_handles_on_one_store_see_each_others_writes(db, store_path, tiny_lm, embedder):
    db.insert(DOCS[:2])
    with ParamDB.open(store_path, model=tiny_lm, embedder=embedder) as reader:
        assert "dogs" not in ids_of(reader.query("Who barks at the mailman?", k=10))
        db.insert(DOCS[2:3])
        assert ids_of(reader.query("Who barks at the mailman?", k=1)) == ["dogs"]


# ---------------------------------------------------------------- generate
@pytest.mark.parametrize("mode", MODES)
def test_generate_returns_an_answer_with_hits_and_timings(library, mode):
    answer = library.generate("What is the capital of Freedonia?", k=2, mode=mode, max_new_tokens=4)
    assert isinstance(answer, Answer) and isinstance(answer.text, str) and answer.mode == mode
    assert set(answer.timings) == TIMING_KEYS and all(t >= 0 for t in answer.timings.values())
    if mode == "closed":
        assert answer.hits == []
    else:
        assert len(answer.hits) == 2 and answer.hits[0].id == "freedonia"


@pytest.mark.parametrize("mode", ["prag", "combine"])
def test_generate_batch_equals_generating_one_question_at_a_time(library, mode):
    questions = ["What is the capital of Freedonia?", "Who barks at the mailman?", "Why purr?"]
    batch = library.generate_batch(questions, k=1, mode=mode, max_new_tokens=6)
    single = [library.generate(q, k=1, mode=mode, max_new_tokens=6) for q in questions]
    assert len(batch) == len(questions)
    assert [a.text for a in batch] == [a.text for a in single]
    assert [ids_of(a.hits) for a in batch] == [ids_of(a.hits) for a in single] == [["freedonia"], ["dogs"], ["cats"]]


def test_generate_leaves_no_adapter_applied(library, tiny_lm):
    library.generate("What is the capital of Freedonia?", k=2, mode="prag", max_new_tokens=2)
    assert all(f is None for f in side_path(tiny_lm.model)._factors)


# ---------------------------------------------------------------- stats and stored bytes
def test_stats_reports_documents_bytes_and_lora_settings(library):
    s = library.stats()
    assert s["documents"] == len(DOCS)
    assert s["bytes"]["total"] > 0
    assert s["bytes"]["total"] == s["bytes"]["metadata"] + s["bytes"]["blobs"] + s["bytes"]["index"]
    assert (s["lora"]["rank"], s["lora"]["alpha"]) == (FAST_TRAINING["rank"], FAST_TRAINING["alpha"])
    assert s["training"]["epochs"] == FAST_TRAINING["epochs"]


def test_adapters_are_stored_as_fp16_safetensors(library, tiny_lm):
    raw = library.handle.store.blobs.get_adapter(library.handle.store.meta.get(["cats"])[0]["blob_key"])
    tensors = safetensors.numpy.load(raw)                        # any safetensors reader can open it
    modules = side_path(tiny_lm.model).modules
    assert set(tensors) == {f"{n}.{f}" for n, _ in modules for f in ("lora_A", "lora_B")}
    assert all(t.dtype == np.float16 for t in tensors.values())
    for name, m in modules:
        assert tensors[f"{name}.lora_A"].shape == (FAST_TRAINING["rank"], m.in_features)


# ---------------------------------------------------------------- a different base model
def test_other_base_model_refuses_generate_naming_the_fingerprint_but_query_works(db, store_path, embedder):
    db.insert(DOCS[:2])
    stored = db.config.model_fingerprint
    db.close()
    other = make_tiny_lm(seed=1)
    assert other.fingerprint != stored
    with ParamDB.open(store_path, model=other, embedder=embedder) as again:
        with pytest.raises(ModelMismatch) as err:
            again.generate("Which animal purrs?", max_new_tokens=2)
        msg = str(err.value)
        assert stored in msg and other.fingerprint in msg and "\n" not in msg
        assert ids_of(again.query("Which animal purrs?", k=1)) == ["cats"]


def test_mean_merge_weighs_each_of_k_adapters_one_kth(library):
    keys = [[h.id for h in library.query("Which animal purrs?", k=2)]]
    blob_keys = [[library.handle.store.meta.get([i])[0]["blob_key"] for i in keys[0]]]
    mean = merged(library.handle.store, library.handle.models.lm, blob_keys, "mean")
    total = merged(library.handle.store, library.handle.models.lm, blob_keys, "sum")
    for (a, b), (ta, tb) in zip(mean, total):
        assert torch.equal(a, ta) and torch.allclose(b * 2, tb)


def test_adapter_weight_scales_the_merged_adapters_b_factors(library):
    blob_keys = [[library.handle.store.meta.get([h.id])[0]["blob_key"] for h in library.query("Which animal purrs?", k=2)]]
    full = merged(library.handle.store, library.handle.models.lm, blob_keys, "mean")
    half = merged(library.handle.store, library.handle.models.lm, blob_keys, "mean", 0.5)
    for (a, b), (ha, hb) in zip(full, half):
        assert torch.equal(a, ha) and torch.allclose(b * 0.5, hb)


def test_combine_uses_half_weight_adapters_unless_told_otherwise(library):
    q = "Which animal purrs?"
    assert adapter_weight_for("combine", None) == 0.5 and adapter_weight_for("prag", None) == 1.0
    default = library.generate(q, mode="combine", max_new_tokens=4).text
    assert default == library.generate(q, mode="combine", max_new_tokens=4, adapter_weight=0.5).text


@pytest.mark.parametrize("weight", [-0.5, float("nan"), float("inf"), "1", True])
def test_a_bad_adapter_weight_is_refused(library, weight):
    with pytest.raises(InvalidInput, match="adapter_weight"):
        library.generate("Which animal purrs?", adapter_weight=weight)


def test_an_unknown_merge_is_refused(library):
    with pytest.raises(InvalidInput, match="merge"):
        library.generate("Which animal purrs?", merge="max")
