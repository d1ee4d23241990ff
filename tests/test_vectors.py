"""The derived hnswlib index: search, tombstones, filters, growth and generation-checked persistence."""
from __future__ import annotations

import numpy as np
import pytest

from paramdb.storage.vectors import BRUTE_FORCE_MAX, VectorIndex

DIM = 16


@pytest.fixture
def data() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((300, DIM)).astype(np.float32)


@pytest.fixture
def index(tmp_path, data) -> VectorIndex:
    idx = VectorIndex(tmp_path / "vectors.hnsw", DIM)
    idx.build((i + 1, v) for i, v in enumerate(data))
    return idx


def test_search_returns_nearest_first(index, data):
    hits = index.search(data[41], k=3)
    assert hits[0][0] == 42 and hits[0][1] == pytest.approx(1.0, abs=1e-5)
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)


def test_k_is_capped_at_live_items(tmp_path, data):
    idx = VectorIndex(tmp_path / "v", DIM)
    idx.build([(1, data[0]), (2, data[1])])
    assert len(idx.search(data[0], k=10)) == 2
    assert VectorIndex(tmp_path / "w", DIM).search(data[0], k=3) == []


def test_removed_label_is_not_returned(index, data):
    index.remove([42, 99999])
    assert 42 not in [lab for lab, _ in index.search(data[41], k=5)]
    assert len(index) == 299


def test_add_replaces_existing_label(index, data):
    index.add([1], data[100:101])
    assert index.search(data[100], k=2)[0][1] == pytest.approx(1.0, abs=1e-5)
    assert len(index) == 300


def test_small_allowed_set_is_exact(index, data):
    calls = []

    def vectors_for(labels):
        calls.append(labels)
        return data[np.asarray(labels) - 1]

    allowed = {5, 6, 7, 999999}
    hits = index.search(data[5], k=10, allowed=allowed, vectors_for=vectors_for)
    assert hits[0] == (6, pytest.approx(1.0, abs=1e-5)) and {h[0] for h in hits} == {5, 6, 7}
    assert calls == [[5, 6, 7]]


def test_small_allowed_set_without_vectors_uses_index_vectors(index, data):
    assert index.search(data[5], k=1, allowed={6, 7})[0][0] == 6


def test_large_allowed_set_uses_hnsw_filter(tmp_path):
    rng = np.random.default_rng(1)
    vecs = rng.standard_normal((BRUTE_FORCE_MAX * 3, 8)).astype(np.float32)
    idx = VectorIndex(tmp_path / "v", 8)
    idx.build(enumerate(vecs))
    allowed = set(range(0, len(vecs), 2))  # > BRUTE_FORCE_MAX labels

    def no_vectors(labels):
        raise AssertionError("large allowed sets must not use brute force")

    hits = idx.search(vecs[10], k=5, allowed=allowed, vectors_for=no_vectors)
    assert hits[0][0] == 10 and all(lab in allowed for lab, _ in hits)


def test_capacity_grows_past_initial_size(tmp_path, data):
    idx = VectorIndex(tmp_path / "v", DIM, capacity=16)
    idx.build((i, v) for i, v in enumerate(data[:40]))
    idx.add(list(range(40, 300)), data[40:])
    assert len(idx) == 300
    assert idx.search(data[250], k=1)[0][0] == 250


def test_save_load_roundtrip(index, tmp_path, data):
    index.remove([3])
    index.save(generation=7)
    again = VectorIndex(tmp_path / "vectors.hnsw", DIM)
    assert again.load_or_none(7)
    assert len(again) == 299
    assert again.search(data[41], k=1)[0][0] == 42
    assert 3 not in [lab for lab, _ in again.search(data[2], k=5)]


def test_stale_generation_is_not_loaded(index, tmp_path):
    index.save(generation=7)
    assert not VectorIndex(tmp_path / "vectors.hnsw", DIM).load_or_none(8)


def test_missing_or_wrong_dim_is_not_loaded(index, tmp_path):
    assert not VectorIndex(tmp_path / "nothing.hnsw", DIM).load_or_none(0)
    index.save(generation=1)
    assert not VectorIndex(tmp_path / "vectors.hnsw", DIM + 1).load_or_none(1)


def test_corrupt_index_file_is_not_loaded(index, tmp_path):
    index.save(generation=1)
    (tmp_path / "vectors.hnsw").write_bytes(b"garbage")
    assert not VectorIndex(tmp_path / "vectors.hnsw", DIM).load_or_none(1)
