"""The translator on the real default model: distill from a few passages, fast-insert another, answer from it."""
from __future__ import annotations


import pytest

from paramdb import ParamDB
from paramdb.ops.distill_store import distill

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("all_cores")]

LEARN = [
    "Gorran Velt is a footballer who plays for the club Redmoor Athletic. He wears the shirt number eleven.",
    "The Starling Cipher is a code invented by the spy Edda Quorn. It was broken in 1958 by Rufus Amblecot.",
    "The Tallow Bridge crosses the river Vesk in the town of Amberlow. It was built from red granite in 1821.",
    "Mirelle Danth is a painter who lives in the village of Osterby. She paints only foxes and herons.",
]
NEW = {"id": "pell", "text": "The Pellworth Lantern is a lamp invented by the glazier Ansel Corrow in 1874."}


def test_distill_then_fast_insert_then_answer_on_the_default_model(tmp_path):
    with ParamDB.open(tmp_path / "store", create=True) as db:
        result = distill(db.handle.store, db.handle.models, LEARN, epochs=1, held_out=0.25)
        assert result.docs == 4 and result.held_out_docs == 1
        assert result.translator_bytes < 8 * result.adapter_bytes        # a few adapters' worth, not more
        db.insert(NEW, parameterize="translate")
        assert db.get("pell").adapter_kind == "translated"
        for mode in ("prag", "combine"):
            ans = db.generate("Who invented the Pellworth Lantern?", k=1, mode=mode, max_new_tokens=16)
            assert ans.hits[0].id == "pell" and ans.text.strip()
