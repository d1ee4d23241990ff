"""The export on the real default model: the merged adapter of a question, loaded with plain transformers
(base model from the folder the config names: the GGUF's converted copy) and PEFT, answers with ParamDB's
tokens and logits."""
from __future__ import annotations

import json

import pytest
from paramdb.interop.peft_export import export_peft

pytest.importorskip("peft")

from peft_helpers import assert_same_answer, paramdb_steps, peft_steps  # noqa: E402
from paramdb import ParamDB  # noqa: E402
from paramdb.knowledge.models import cache_dir  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("all_cores"), pytest.mark.filterwarnings("ignore::UserWarning")]
DOCS = [
    {"id": "velt", "text": "Gorran Velt is a footballer who plays for the club Redmoor Athletic. "
                           "He wears the shirt number eleven."},
    {"id": "crake", "text": "The Tallow Bridge crosses the river Vesk in the town of Amberlow. "
                            "The bridge was designed by the architect Simeon Crake."},
]
QUESTION = "Which club does Gorran Velt play for?"


@pytest.mark.parametrize("merge", ["mean", "sum"])
def test_real_model_merge_export_answers_like_paramdb(tmp_path_factory, merge):
    store = tmp_path_factory.getbasetemp() / "real-peft-store"
    fresh = not store.exists()
    with ParamDB.open(store, create=True, precision="fp32", training={"epochs": 3} if fresh else None) as db:
        if len(db) == 0:
            db.insert(DOCS)
        done = export_peft(db.handle.store, db.handle.models, None, tmp_path_factory.mktemp("x") / "merged", question=QUESTION, k=2, merge=merge)
        base = json.loads((done.path / "adapter_config.json").read_text())["base_model_name_or_path"]
        assert base.startswith(str(cache_dir() / "models"))       # the converted GGUF, loadable by transformers
        ours, text = paramdb_steps(db, QUESTION, k=2, merge=merge, max_new_tokens=16)
        closed, _ = paramdb_steps(db, QUESTION, mode="closed", max_new_tokens=1)
    assert (ours[0] - closed[0]).abs().max() > 1e-2            # the merged adapters change the answer
    theirs, ids, _ = peft_steps(done.path, QUESTION, len(ours))
    worst = assert_same_answer(ours, theirs, ids)
    print(f"\n[real model, {merge} merge, k=2, rank {done.rank}] {len(ours)} steps, tokens identical, "
          f"max |logit difference| {worst:.2e}; answer: {text!r}")
