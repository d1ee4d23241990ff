"""The LMDB blob store: atomic batches, growth on demand, zero-copy reads."""
from __future__ import annotations

import os

import pytest

from paramdb.errors import InvalidInput, ReadOnlyStore
from paramdb.storage.blobs import BlobStore


@pytest.fixture
def store(tmp_path):
    with BlobStore(tmp_path / "blobs.lmdb") as s:
        yield s


def test_put_get_roundtrip(store):
    store.put({"k1": b"adapter"}, {"k1": b"embedding"})
    assert store.get_adapter("k1") == b"adapter"
    assert store.get_embedding("k1") == b"embedding"
    assert store.get_adapter("missing") is None


def test_directory_is_private(tmp_path):
    BlobStore(tmp_path / "b").close()
    assert (tmp_path / "b").stat().st_mode & 0o777 == 0o700


def test_failed_batch_writes_nothing(store):
    with pytest.raises(TypeError):
        store.put({"a": b"x", "b": 12345}, {"a": b"y"})  # type: ignore[dict-item]
    assert store.count("adapters") == 0 and store.count("embeddings") == 0


def test_map_grows_instead_of_failing(tmp_path):
    with BlobStore(tmp_path / "b", map_size=1 << 20) as s:
        before = s._s.env.info()["map_size"]
        s.put({f"k{i}": os.urandom(100_000) for i in range(100)}, {})
        assert s.count() == 100
        assert s._s.env.info()["map_size"] > before


def test_reopen_with_small_map_uses_file_size(tmp_path):
    with BlobStore(tmp_path / "b", map_size=1 << 20) as s:
        s.put({f"k{i}": os.urandom(100_000) for i in range(30)}, {})
    with BlobStore(tmp_path / "b", map_size=1 << 20) as s:
        assert s._s.env.info()["map_size"] >= (tmp_path / "b" / "data.mdb").stat().st_size
        s.put({"more": os.urandom(100_000)}, {})
        assert s.count() == 31


def test_delete_removes_from_both_and_ignores_missing(store):
    store.put({"a": b"1", "b": b"2"}, {"a": b"3", "b": b"4"})
    store.delete(["a", "nope"])
    assert store.keys("adapters") == ["b"] and store.keys("embeddings") == ["b"]


def test_reader_memoryviews_are_zero_copy(store):
    store.put({"a": b"adapter"}, {"a": b"vec"})
    with store.reader() as r:
        view = r.adapter("a")
        assert isinstance(view, memoryview) and bytes(view) == b"adapter"
        assert bytes(r.embedding("a")) == b"vec"
        assert r.adapter("missing") is None


def test_reopen_persists(tmp_path):
    with BlobStore(tmp_path / "b") as s:
        s.put({"a": b"1"}, {"a": b"2"})
    with BlobStore(tmp_path / "b") as s:
        assert s.get_adapter("a") == b"1" and s.get_embedding("a") == b"2"


def test_readonly_open_reads_and_refuses_writes(tmp_path):
    with BlobStore(tmp_path / "b") as s:
        s.put({"a": b"1"}, {"a": b"2"})
    with BlobStore(tmp_path / "b", readonly=True) as s:
        assert s.get_adapter("a") == b"1"
        with pytest.raises(ReadOnlyStore):
            s.put({"b": b"x"}, {})


def test_keys_count_and_iter_embeddings(store):
    store.put({"a": b"1", "b": b"2"}, {"a": b"x", "b": b"y"})
    assert store.keys() == ["a", "b"] and store.count("embeddings") == 2
    assert dict(store.iter_embeddings()) == {"a": b"x", "b": b"y"}


def test_unknown_kind_is_rejected(store):
    with pytest.raises(InvalidInput):
        store.keys("tensors")


def test_copy_to_makes_a_readable_copy(store, tmp_path):
    store.put({"a": b"1"}, {"a": b"2"})
    store.copy_to(tmp_path / "copy")
    assert store.size_bytes() > 0
    with BlobStore(tmp_path / "copy", readonly=True) as c:
        assert c.get_embedding("a") == b"2"
