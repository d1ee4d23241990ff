"""Errors a user can cause: the right type, a one-line message naming the culprit, and no change to the store."""
from __future__ import annotations

import pytest

from conftest import FAST_TRAINING
from paramdb import (Document, DuplicateId, InvalidFilter, InvalidInput, MetadataUnavailable, ParamDB,
                     StoreExists, StoreNotFound, UnknownId)
from paramdb.config import MODES
from paramdb import validate

DOCS = [{"id": "cats", "text": "Cats sleep most of the day and purr when content.", "metadata": {"year": 2015}},
        {"id": "dogs", "text": "Dogs bark at the mailman every morning.", "metadata": {"year": 2021}}]


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_lm, embedder):
    with ParamDB.open(tmp_path_factory.mktemp("errors") / "store", create=True, model=tiny_lm,
                      embedder=embedder, training=FAST_TRAINING) as database:
        database.insert(DOCS)
        yield database


def snapshot(db) -> tuple:
    return len(db), [d.id for d in db.list()], db.handle.store.blobs.count("adapters"), db.handle.store.blobs.count("embeddings")


@pytest.fixture
def unchanged(store):
    """Asserts after the test that the store holds exactly what it held before."""
    before = snapshot(store)
    yield store
    assert snapshot(store) == before


def message(excinfo, *names: str) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    for name in names:
        assert name in msg, (name, msg)
    return msg


# ---------------------------------------------------------------- insert
@pytest.mark.parametrize("text", ["", "   \n\t "], ids=["empty", "whitespace"])
def test_insert_of_empty_text_is_refused(unchanged, text):
    with pytest.raises(InvalidInput) as err:
        unchanged.insert(text)
    message(err, "document 1", "text is empty")


def test_a_batch_with_one_bad_item_adds_nothing(unchanged):
    with pytest.raises(InvalidInput) as err:
        unchanged.insert(["Owls hunt at night.", {"text": "  "}, "Bees make honey."])
    message(err, "document 2", "text is empty")


def test_a_batch_with_an_item_of_the_wrong_type_adds_nothing(unchanged):
    with pytest.raises(InvalidInput) as err:
        unchanged.insert(["Owls hunt at night.", "Bees make honey.", 42])
    message(err, "document 3", "int")


def test_an_insert_argument_that_is_no_document_is_refused_before_the_translator_is_looked_for(unchanged):
    with pytest.raises(InvalidInput) as err:       # this store has no translator: the argument is named first
        unchanged.insert(5, parameterize="translate")
    message(err, "insert takes", "int")


def test_insert_of_an_id_already_stored_raises_duplicate_id(unchanged):
    with pytest.raises(DuplicateId) as err:
        unchanged.insert([{"id": "owls", "text": "Owls hunt at night."}, {"id": "cats", "text": "Cats again."}])
    message(err, "'cats'", "upsert")
    assert err.value.doc_id == "cats"


def test_an_id_repeated_inside_the_batch_is_refused(unchanged):
    with pytest.raises(InvalidInput) as err:
        unchanged.insert([{"id": "x", "text": "Owls hunt at night."}, {"id": "x", "text": "Bees make honey."}])
    message(err, "'x'", "document 2", "document 1")


@pytest.mark.parametrize("meta", [["a"], "tag", 3], ids=["list", "str", "int"])
def test_non_dict_metadata_is_refused(unchanged, meta):
    with pytest.raises(InvalidInput) as err:
        unchanged.insert({"text": "Owls hunt at night.", "metadata": meta})
    message(err, "document 1", "metadata must be an object", type(meta).__name__)


def test_non_dict_metadata_on_a_document_is_refused(unchanged):
    with pytest.raises(InvalidInput) as err:
        unchanged.insert(Document(text="Owls hunt at night.", metadata=[("k", "v")]))
    message(err, "document 1", "metadata must be an object")


@pytest.mark.parametrize("meta", [[], "", 0], ids=["empty-list", "empty-str", "zero"])
def test_falsy_non_dict_metadata_is_refused_too(meta):
    with pytest.raises(InvalidInput, match="metadata must be an object"):
        validate.document({"text": "Owls hunt at night.", "metadata": meta}, "document 1")


# ---------------------------------------------------------------- get and delete
def test_get_of_an_unknown_id_raises_unknown_id(unchanged):
    with pytest.raises(UnknownId) as err:
        unchanged.get("nope")
    message(err, "'nope'")
    assert isinstance(err.value, KeyError) and err.value.doc_id == "nope"


def test_delete_of_an_unknown_id_raises_unknown_id(unchanged):
    with pytest.raises(UnknownId) as err:
        unchanged.delete("nope")
    message(err, "'nope'")


def test_delete_of_known_and_unknown_ids_deletes_nothing(unchanged):
    with pytest.raises(UnknownId) as err:
        unchanged.delete(["cats", "nope"])
    message(err, "'nope'")
    assert unchanged.get("cats").text == DOCS[0]["text"]
    assert unchanged.query("Which animal purrs?", k=1)[0].id == "cats"


# ---------------------------------------------------------------- query and generate arguments
def test_unknown_mode_is_refused_listing_the_valid_modes(unchanged):
    with pytest.raises(InvalidInput) as err:
        unchanged.generate("Which animal purrs?", mode="magic")
    message(err, "'magic'", *MODES)


@pytest.mark.parametrize("question", ["", "  "], ids=["empty", "whitespace"])
def test_empty_question_is_refused(unchanged, question):
    with pytest.raises(InvalidInput) as err:
        unchanged.generate(question)
    message(err, "question is empty")
    with pytest.raises(InvalidInput, match="question is empty"):
        unchanged.generate_batch(["Which animal purrs?", question])
    with pytest.raises(InvalidInput, match="query text is empty"):
        unchanged.query(question)


@pytest.mark.parametrize("k", [0, -1])
def test_k_below_one_is_refused(unchanged, k):
    with pytest.raises(InvalidInput) as err:
        unchanged.query("Which animal purrs?", k=k)
    message(err, "k must be at least 1", str(k))
    with pytest.raises(InvalidInput, match="k must be at least 1"):
        unchanged.generate("Which animal purrs?", k=k)


@pytest.mark.parametrize("where, culprit", [({"year": {"$foo": 1}}, "'$foo'"),
                                            ({"$xor": [{"year": 1}]}, "'$xor'"),
                                            ({"year": {"$gt": "2000"}}, "'2000'")])
def test_malformed_where_filter_raises_invalid_filter(unchanged, where, culprit):
    with pytest.raises(InvalidFilter) as err:
        unchanged.query("Which animal purrs?", where=where)
    message(err, culprit)
    with pytest.raises(InvalidFilter):
        unchanged.generate("Which animal purrs?", where=where)


# ---------------------------------------------------------------- opening and creating stores
def test_opening_a_missing_path_raises_store_not_found(tmp_path):
    path = tmp_path / "nowhere"
    with pytest.raises(StoreNotFound) as err:
        ParamDB.open(path)
    message(err, str(path))
    assert not path.exists()


def test_open_with_create_on_an_existing_store_just_opens_it(db, store_path, tiny_lm, embedder):
    db.insert(DOCS[:1])
    db.close()
    with ParamDB.open(store_path, create=True, model=tiny_lm, embedder=embedder) as again:
        assert [(d.id, d.text) for d in again.list()] == [("cats", DOCS[0]["text"])]


def test_create_on_an_existing_store_raises_store_exists(store, tiny_lm, embedder):
    with pytest.raises(StoreExists) as err:
        ParamDB.create(store.path, model=tiny_lm, embedder=embedder)
    message(err, str(store.path))


def test_creating_a_store_in_a_non_empty_folder_raises_store_exists(tmp_path, tiny_lm, embedder):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "todo.txt").write_text("buy milk")
    with pytest.raises(StoreExists) as err:
        ParamDB.open(folder, create=True, model=tiny_lm, embedder=embedder)
    message(err, str(folder))
    assert [p.name for p in folder.iterdir()] == ["todo.txt"]


@pytest.mark.parametrize("training, culprit", [
    ({"stop_loss": -1}, "stop_loss"), ({"epochs": 0}, "epochs"), ({"lr": 0}, "lr"),
    ({"lr": float("nan")}, "lr"), ({"rank": "4"}, "rank"), ({"epochs": 2.5}, "epochs"), ({"rank": True}, "rank")])
def test_out_of_range_training_settings_are_refused_and_create_nothing(tmp_path, tiny_lm, embedder, training,
                                                                       culprit):
    path = tmp_path / "store"
    with pytest.raises(InvalidInput) as err:
        ParamDB.create(path, model=tiny_lm, embedder=embedder, training=training)
    message(err, culprit)
    assert not path.exists()


def test_an_integer_learning_rate_is_accepted_as_a_number(tmp_path, tiny_lm, embedder):
    with ParamDB.create(tmp_path / "store", model=tiny_lm, embedder=embedder, training={"lr": 1}) as db:
        assert db.config.training.lr == 1


def test_create_on_a_database_holding_another_store_is_refused_and_that_store_kept(store, tmp_path, tiny_lm,
                                                                                     embedder):
    url = f"sqlite:///{(store.path / 'meta.sqlite').resolve()}"
    before = snapshot(store), store.handle.store.meta.get_info("config")
    with pytest.raises(StoreExists) as err:
        ParamDB.create(tmp_path / "second", model=tiny_lm, embedder=embedder, meta_url=url,
                       training={"epochs": 7})
    message(err, "meta.sqlite", "already holds")
    assert not (tmp_path / "second").exists()
    assert (snapshot(store), store.handle.store.meta.get_info("config")) == before


def test_a_failed_create_leaves_an_empty_folder_empty_so_a_retry_succeeds(tmp_path, tiny_lm, embedder):
    folder = tmp_path / "store"
    folder.mkdir()
    unreachable = f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'meta.sqlite'}"
    with pytest.raises(MetadataUnavailable) as err:
        ParamDB.create(folder, model=tiny_lm, embedder=embedder, meta_url=unreachable)
    message(err, "no/such/dir/meta.sqlite", "unable to open")
    assert folder.exists() and not any(folder.iterdir())
    with ParamDB.create(folder, model=tiny_lm, embedder=embedder) as db:
        assert len(db) == 0


@pytest.mark.parametrize("url, error, culprit", [
    ("notaurl", InvalidInput, "not a database URL"),
    ("nosuchdb+nodriver://h/db", MetadataUnavailable, "no database driver")])
def test_create_with_an_unusable_meta_url_names_it_and_makes_nothing(tmp_path, tiny_lm, embedder, url, error,
                                                                     culprit):
    with pytest.raises(error) as err:
        ParamDB.create(tmp_path / "store", model=tiny_lm, embedder=embedder, meta_url=url)
    message(err, culprit, url.split(":")[0])
    assert not (tmp_path / "store").exists()
