"""The translator: document in, adapter out, learned from the store's own rows; stored in LMDB."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import FAST_TRAINING, make_tiny_lm
from paramdb import ParamDB
from paramdb.engine import translator_blob as translators
from paramdb.errors import InvalidInput, ModelMismatch, NoTranslator
from paramdb.knowledge.lora import side_path
from paramdb.knowledge.translator import TranslatorSettings, new_translator, translate
from paramdb.ops.copy import copy_store
from paramdb.ops.backup import backup, restore, verify
from paramdb.engine.translator_blob import cached as stored_translator
from paramdb.ops.check import check
from paramdb.ops.distill_store import distill
from paramdb.ops.refine import refine

TOWNS = ["Ebberlin", "Dromesh", "Tarrow", "Kellam", "Ostvane", "Quill", "Marrow", "Pellin", "Sorrel", "Vantage",
         "Iberra", "Ulmstead"]
DOCS = [{"id": f"d{i}", "text": f"Person {i} lives in {t}. Person {i} bakes bread in {t} every morning."}
        for i, t in enumerate(TOWNS)]


def distilled(db, **kw):
    return distill(db.handle.store, db.handle.models, **{"teacher": "context", "epochs": 6, "lr": 1e-2, "held_out": 0.25, **kw})


@pytest.fixture
def trained_db(db):
    db.insert(DOCS[:8], batch_size=8)
    return db


def test_translator_writes_one_adapter_per_document_in_the_store_layout(tiny_lm):
    t = new_translator(tiny_lm, TranslatorSettings(rank=2))
    adapters = translate(tiny_lm, t, ["One text.", "Another, longer text about bread."])
    sp = side_path(tiny_lm.model)
    assert len(adapters) == 2
    for name, shape in zip([n for n, _ in sp.modules], sp.shapes):
        assert adapters[0][f"{name}.lora_A"].shape == (2, shape.in_features)
        assert adapters[0][f"{name}.lora_B"].shape == (shape.out_features, 2)


def test_translator_output_is_deterministic_for_a_seed_and_differs_between_documents(tiny_lm):
    a = translate(tiny_lm, new_translator(tiny_lm, TranslatorSettings(rank=2, seed=3)), ["Bread.", "Glass."])
    b = translate(tiny_lm, new_translator(tiny_lm, TranslatorSettings(rank=2, seed=3)), ["Bread.", "Glass."])
    key = next(k for k in a[0] if k.endswith("lora_B"))
    assert all(np.array_equal(a[i][k], b[i][k]) for i in range(2) for k in a[i])
    assert not np.array_equal(a[0][key], a[1][key])


def test_distilled_translator_lowers_held_out_documents_loss_below_no_adapter(trained_db):
    result = distilled(trained_db)
    assert result.held_out_docs == 2
    assert result.held_out_loss < result.base_loss - 0.05, (result.held_out_loss, result.base_loss)


def test_adapter_teacher_learns_from_trained_rows(trained_db):
    result = distilled(trained_db, teacher="adapter")
    assert result.teacher == "adapter" and result.docs == 8
    assert result.held_out_loss < result.base_loss


def test_translated_insert_records_its_kind_and_answers_from_it(trained_db):
    distilled(trained_db, epochs=1)
    ids = trained_db.insert(DOCS[8:10], parameterize="translate")
    assert [trained_db.get(i).adapter_kind for i in ids] == ["translated", "translated"]
    assert trained_db.get("d0").adapter_kind == "trained"
    assert trained_db.stats()["adapters"] == {"trained": 8, "translated": 2, "imported": 0, "pending": 0}
    ans = trained_db.generate("Where does Person 8 live?", k=2, mode="prag", max_new_tokens=4)
    assert ans.hits and ans.text is not None


def test_an_answer_from_translated_adapters_says_which_are_not_yet_refined(trained_db):
    distilled(trained_db, epochs=1)
    trained_db.insert(DOCS[8:10], parameterize="translate")
    ans = trained_db.generate("Where does Person 8 live?", k=10, mode="prag", max_new_tokens=4)
    assert {h.id: h.adapter_kind for h in ans.hits}["d8"] == "translated"
    assert {h.id: h.adapter_kind for h in ans.hits}["d0"] == "trained"
    (note,) = [n for n in ans.notes if "not yet refined" in n]
    assert "d8" in note and "d9" in note and "d0" not in note and "paramdb refine" in note


def test_answers_from_trained_adapters_or_passages_alone_carry_no_refine_note(trained_db):
    before = trained_db.generate("Where does Person 0 live?", k=8, mode="prag", max_new_tokens=4)
    assert [h.adapter_kind for h in before.hits] == ["trained"] * 8 and before.notes == []
    distilled(trained_db, epochs=1)
    trained_db.insert(DOCS[8:10], parameterize="translate")
    icl = trained_db.generate("Where does Person 8 live?", k=10, mode="icl", max_new_tokens=4)
    assert "translated" in {h.adapter_kind for h in icl.hits}
    assert not any("refine" in n for n in icl.notes)


def test_translated_insert_without_a_translator_says_how_to_make_one_and_adds_nothing(db):
    with pytest.raises(NoTranslator, match="paramdb distill"):
        db.insert(DOCS[:2], parameterize="translate")
    assert len(db) == 0


def test_distill_on_an_empty_store_is_refused_and_stores_no_translator(db):
    with pytest.raises(InvalidInput, match="no documents to learn from"):
        distill(db.handle.store, db.handle.models)
    assert db.stats()["translator"] is None


@pytest.mark.parametrize("bad, message", [({"teacher": "oracle"}, "unknown teacher 'oracle'"),
                                          ({"epochs": 0}, "epochs must be at least 1"),
                                          ({"limit": 0}, "limit must be at least 1"),
                                          ({"held_out": 1.0}, r"held-out fraction must be in \[0, 1\)")])
def test_distill_refuses_bad_knobs_and_stores_no_translator(trained_db, bad, message):
    with pytest.raises(InvalidInput, match=message):
        distill(trained_db.handle.store, trained_db.handle.models, **bad)
    assert trained_db.stats()["translator"] is None


def test_a_new_distill_replaces_the_translator_a_handle_had_loaded(trained_db):
    distilled(trained_db)
    first = stored_translator(trained_db.handle.store)
    distilled(trained_db)
    assert stored_translator(trained_db.handle.store) is not first


def test_distill_from_passages_lets_an_empty_store_insert_fast(db):
    distilled(db, source=[d["text"] for d in DOCS[:6]], epochs=1)
    assert len(db) == 0
    db.insert(DOCS[6:8], parameterize="translate")
    assert db.stats()["adapters"] == {"trained": 0, "translated": 2, "imported": 0, "pending": 0}
    assert db.stats()["translator"]["learned_from"]["count"] == 6


def test_a_translated_insert_on_ray_is_refused_and_adds_nothing(db):
    distilled(db, source=[d["text"] for d in DOCS[:6]], epochs=1)
    with pytest.raises(InvalidInput, match="runs locally"):
        db.insert(DOCS[6:8], parameterize="translate", executor="ray")
    assert len(db) == 0


def test_adapter_teacher_with_passages_from_a_file_is_refused(db):
    with pytest.raises(InvalidInput, match="--teacher context"):
        distill(db.handle.store, db.handle.models, source=["Some text."], teacher="adapter")


def test_stored_translator_round_trips_and_translates_the_same(trained_db):
    distilled(trained_db, epochs=1)
    t, info = translators.load(trained_db.handle.store.blobs, trained_db.config.model_fingerprint, "s")
    fresh = translate(trained_db.handle.models.lm, t, ["Person 9 lives in Sorrel."])[0]
    again = translate(trained_db.handle.models.lm, stored_translator(trained_db.handle.store), ["Person 9 lives in Sorrel."])[0]
    assert info["learned_from"]["count"] == 8 and info["teacher"] == "context"
    assert all(np.array_equal(fresh[k], again[k]) for k in fresh)


def test_translator_from_another_base_model_is_refused_in_one_line(trained_db):
    other = make_tiny_lm(seed=1, name="other")
    translators.save(trained_db.handle.store.blobs, new_translator(other, TranslatorSettings(rank=2)),
                     other.fingerprint, translators.Provenance(count=1))
    with pytest.raises(ModelMismatch) as err:
        trained_db.insert(DOCS[8:9], parameterize="translate")
    assert "another base model" in str(err.value) and "\n" not in str(err.value)
    assert len(trained_db) == 8
    assert [f.kind for f in check(trained_db.handle.store, trained_db.handle.models).findings if f.severity == "error"] == ["translator-model"]


def test_check_finds_a_corrupt_translator(trained_db):
    distilled(trained_db, epochs=1)
    buf = bytearray(trained_db.handle.store.blobs.get_model(translators.KEY))
    buf[-3] ^= 0xFF
    trained_db.handle.store.blobs.put_model(translators.KEY, bytes(buf))
    assert [f.kind for f in check(trained_db.handle.store, trained_db.handle.models).findings if f.severity == "error"] == ["translator-corrupt"]


def test_backup_restore_verify_and_copy_carry_the_translator(trained_db, tmp_path, tiny_lm, embedder):
    distilled(trained_db, epochs=1)
    want = translate(trained_db.handle.models.lm, stored_translator(trained_db.handle.store), ["Person 9 lives in Sorrel."])[0]
    archive = tmp_path / "b.tar"
    backup(trained_db.handle.store, archive)
    assert verify(archive) == []
    restore(archive, tmp_path / "restored")
    copy_store(trained_db.path, tmp_path / "copied")
    for path in (tmp_path / "restored", tmp_path / "copied"):
        with ParamDB.open(path, model=tiny_lm, embedder=embedder) as other:
            got = translate(other.handle.models.lm, stored_translator(other.handle.store), ["Person 9 lives in Sorrel."])[0]
            assert all(np.array_equal(want[k], got[k]) for k in want)
            assert not [f for f in check(other.handle.store, other.handle.models).findings if f.severity == "error"]


def test_refine_replaces_translated_adapters_with_trained_ones(trained_db):
    distilled(trained_db, epochs=1)
    trained_db.insert(DOCS[8:11], parameterize="translate")
    before = {r["id"]: r["blob_key"] for r in trained_db.handle.store.meta.rows_of_kind("translated")}
    result = refine(trained_db.handle.store, trained_db.handle.models, batch_size=2)
    assert (result.refined, result.remaining) == (3, 0)
    assert trained_db.stats()["adapters"] == {"trained": 11, "translated": 0, "imported": 0, "pending": 0}
    after = {r["id"]: r["blob_key"] for r in trained_db.handle.store.meta.get(list(before))}
    assert all(after[i] != before[i] for i in before)
    assert not (set(before.values()) & set(trained_db.handle.store.blobs.keys()))   # old blobs gone
    assert check(trained_db.handle.store, trained_db.handle.models).ok


def test_refine_leaves_a_row_changed_while_it_trained(trained_db, monkeypatch):
    import paramdb.ops.refine as refine_mod

    distilled(trained_db, epochs=1)
    trained_db.insert(DOCS[8:10], parameterize="translate")
    real = refine_mod.train_adapters

    def train_then_upsert(lm, samples, keys, s):
        out = real(lm, samples, keys, s)
        trained_db.upsert({"id": "d9", "text": "Person 9 moved to Vantage."}, parameterize="translate")
        return out

    monkeypatch.setattr(refine_mod, "train_adapters", train_then_upsert)
    result = refine(trained_db.handle.store, trained_db.handle.models, batch_size=2, limit=2)
    assert (result.refined, result.skipped) == (1, ["d9"])
    assert trained_db.get("d9").text == "Person 9 moved to Vantage."
    assert trained_db.get("d9").adapter_kind == "translated"
    assert check(trained_db.handle.store, trained_db.handle.models).ok
