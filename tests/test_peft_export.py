"""`export_peft` / `paramdb export`: PEFT folders that plain transformers + PEFT load and answer with
exactly as ParamDB does."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from paramdb.interop.peft_export import export_peft

pytest.importorskip("peft")

from peft_helpers import DOCS, QUESTION, assert_same_answer, open_store, paramdb_steps, peft_steps, save_tiny  # noqa: E402
from paramdb.errors import InvalidInput, UnknownId  # noqa: E402
from paramdb.interop.folders import folder_name  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture(scope="module")
def filled(tmp_path_factory, model_dir, embedder):
    path = tmp_path_factory.mktemp("store") / "s"
    with open_store(path, model_dir, embedder) as db:
        db.insert(DOCS)
    return path


@pytest.fixture
def db(filled, model_dir, embedder):
    with open_store(filled, model_dir, embedder, create=False) as database:
        yield database


def test_one_row_exports_as_a_peft_folder_that_answers_like_paramdb(db, tmp_path):
    top = db.query(QUESTION, k=1)[0].id
    done = export_peft(db.handle.store, db.handle.models, top, tmp_path / "a")
    cfg = json.loads((done.path / "adapter_config.json").read_text())
    assert (cfg["peft_type"], cfg["r"], cfg["lora_alpha"]) == ("LORA", 2, 4.0)     # the store's r and alpha
    ours, text = paramdb_steps(db, QUESTION, k=1, max_new_tokens=6)
    theirs, ids, _ = peft_steps(done.path, QUESTION, len(ours))
    assert_same_answer(ours, theirs, ids)


@pytest.mark.parametrize("merge, weight", [("mean", None), ("sum", 0.5), ("rank", None)])
def test_a_questions_merge_exports_as_one_adapter_that_answers_like_generate(db, tmp_path, merge, weight):
    done = export_peft(db.handle.store, db.handle.models, None, tmp_path / "m", question=QUESTION, k=3, merge=merge, adapter_weight=weight)
    cfg = json.loads((done.path / "adapter_config.json").read_text())
    assert cfg["r"] == 3 * 2 and cfg["lora_alpha"] == cfg["r"]          # rank k*r, PEFT scaling 1
    sidecar = json.loads((done.path / "paramdb_export.json").read_text())
    assert sidecar["documents"] == done.hits and sorted(done.hits) == sorted(d["id"] for d in DOCS)
    assert sidecar["merge"] == merge and "rank = sum" in sidecar["exact_merge"]
    ours, _ = paramdb_steps(db, QUESTION, k=3, merge=merge, adapter_weight=weight, max_new_tokens=6)
    theirs, ids, peft_model = peft_steps(done.path, QUESTION, len(ours))
    assert_same_answer(ours, theirs, ids)
    enc = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        on = peft_model(enc).logits
        with peft_model.disable_adapter():                                # the merge really changes the answer
            assert (peft_model(enc).logits - on).abs().max() > 1e-3


def test_the_config_names_the_base_model_folder(db, tmp_path, model_dir):
    done = export_peft(db.handle.store, db.handle.models, "quill", tmp_path / "a")
    cfg = json.loads((done.path / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str(model_dir) == done.base_model


def test_several_ids_get_one_folder_each_under_encoded_names(db, tmp_path, embedder):
    odd = ["a/b", "..", "é x", "%41"]
    db.insert([{"id": i, "text": f"Document {n} about the glass of Ebberlin."} for n, i in enumerate(odd)])
    try:
        done = export_peft(db.handle.store, db.handle.models, ["quill", *odd], tmp_path / "many")
        names = {i: p.name for i, p in done.folders.items()}
        assert names["quill"] == "quill" and len(set(names.values())) == 5
        assert all(p.parent == done.path and (p / "adapter_model.safetensors").is_file()
                   for p in done.folders.values())
        index = json.loads((done.path / "paramdb_export.json").read_text())
        assert index["folders"] == names
        assert folder_name("..") == "%2E%2E" and folder_name("%41") != folder_name("A")
    finally:
        db.delete(odd)


def test_a_long_id_gets_a_short_hashed_folder_name():
    a, b = folder_name("x" * 300), folder_name("x" * 299 + "y")
    assert len(a) <= 200 and a != b


def test_a_non_empty_folder_is_refused_unless_forced(db, tmp_path):
    target = tmp_path / "a"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(InvalidInput, match="not empty"):
        export_peft(db.handle.store, db.handle.models, "quill", target)
    assert os.listdir(target) == ["keep.txt"]
    export_peft(db.handle.store, db.handle.models, "quill", target, force=True)
    assert sorted(os.listdir(target)) == ["adapter_config.json", "adapter_model.safetensors", "paramdb_export.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]    # no staging left behind


def test_an_unknown_id_writes_nothing(db, tmp_path):
    with pytest.raises(UnknownId, match="nope"):
        export_peft(db.handle.store, db.handle.models, ["quill", "nope"], tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


def unwritable_folder(tmp_path):
    """A folder this process cannot create anything in: read-only by mode, or /sys for root (whom modes
    do not stop)."""
    if os.geteuid() == 0:
        return Path("/sys")
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o500)
    return locked


def test_an_unwritable_target_is_one_clear_error(db, tmp_path):
    locked = unwritable_folder(tmp_path)
    before = sorted(os.listdir(locked))
    with pytest.raises(InvalidInput, match="cannot write"):
        export_peft(db.handle.store, db.handle.models, "quill", locked / "paramdb-export-test")
    assert sorted(os.listdir(locked)) == before


def test_a_target_in_a_missing_folder_is_one_clear_error(db, tmp_path):
    with pytest.raises(InvalidInput, match="does not exist"):
        export_peft(db.handle.store, db.handle.models, "quill", tmp_path / "missing" / "a")
    assert list(tmp_path.iterdir()) == []


def test_ids_and_a_question_together_are_refused(db, tmp_path):
    with pytest.raises(InvalidInput, match="not both"):
        export_peft(db.handle.store, db.handle.models, "quill", tmp_path / "a", question=QUESTION)


def test_an_option_a_merge_does_not_read_is_refused_and_nothing_is_written(db, tmp_path):
    with pytest.raises(InvalidInput, match="unknown option 'mode'") as err:
        export_peft(db.handle.store, db.handle.models, None, tmp_path / "q", question=QUESTION, mode="icl")
    assert "\n" not in str(err.value) and not (tmp_path / "q").exists()
