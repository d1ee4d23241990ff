"""insert() on an iterator streams: batches are validated and committed one at a time."""
from __future__ import annotations

import pytest

from paramdb import DuplicateId, InvalidInput


def _docs(n, bad_at=None):
    for i in range(1, n + 1):
        yield {"id": f"d{i}", "text": "" if i == bad_at else f"Document number {i} is about topic {i}."}


def test_a_generator_is_inserted_in_batches_with_progress(db):
    calls = []
    ids = db.insert(_docs(5), batch_size=2, progress=lambda done, total: calls.append((done, total)))
    assert ids == [f"d{i}" for i in range(1, 6)] and len(db) == 5
    assert calls == [(0, -1), (2, -1), (4, -1), (5, -1)]


def test_a_bad_item_in_a_later_batch_keeps_earlier_batches_and_adds_nothing_of_its_own(db):
    with pytest.raises(InvalidInput, match="document 3: text is empty"):
        db.insert(_docs(4, bad_at=3), batch_size=2)
    assert sorted(d.id for d in db.list()) == ["d1", "d2"]


def test_an_id_repeated_across_streamed_batches_is_a_duplicate(db):
    stream = iter([{"id": "a", "text": "first a"}, {"id": "b", "text": "b"}, {"id": "a", "text": "second a"}])
    with pytest.raises(DuplicateId, match="'a'"):
        db.insert(stream, batch_size=2)
    assert len(db) == 2 and db.get("a").text == "first a"


def test_a_list_is_validated_whole_before_any_batch_is_written(db):
    with pytest.raises(InvalidInput, match="document 4: text is empty"):
        db.insert(list(_docs(4, bad_at=4)), batch_size=2)
    assert len(db) == 0
