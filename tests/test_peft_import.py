"""`import_peft` / `paramdb import`: a PEFT LoRA trained elsewhere becomes a row that answers as PEFT does,
if it fits the store's base model; otherwise one line says what differs and the store is unchanged."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from paramdb.ops.check import check
from paramdb.interop.peft_export import export_peft
from paramdb.interop.peft_import import import_peft

peft = pytest.importorskip("peft")

from peft_helpers import DOCS, assert_same_answer, open_store, paramdb_steps, peft_steps, save_tiny  # noqa: E402
from paramdb.errors import DuplicateId, InvalidInput, ModelMismatch  # noqa: E402
from paramdb.engine.adapters import factors_for_ids

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
TEXT = "The lighthouse of Venmor is kept by the twins Ada and Ilse Brann."
QUESTION = "Who keeps the lighthouse of Venmor?"


def make_peft_adapter(base_dir, out, rank: int, alpha: float, seed: int = 0, rslora: bool = False, **extra):
    """A LoRA saved by PEFT itself on the model in ``base_dir``, with random fp16-representable factors."""
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    model = peft.get_peft_model(base, peft.LoraConfig(
        task_type="CAUSAL_LM", target_modules=["gate_proj", "up_proj", "down_proj"], r=rank, lora_alpha=alpha,
        use_rslora=rslora, **extra))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_((torch.randn(p.shape, generator=g) * 0.3).half().float())
    model.save_pretrained(str(out))
    return out


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
def db(filled, model_dir, embedder, tmp_path):
    copy = tmp_path / "store"
    shutil.copytree(filled, copy)
    with open_store(copy, model_dir, embedder, create=False) as database:
        yield database


def state(db) -> tuple[int, int, list[str]]:
    return len(db), db.generation, sorted(d.id for d in db.list())


# Store: r=2, alpha=4 (scale 2). Each PEFT scaling below is the store's times a power of two, so the
# conversion (B times the ratio) is exact and only PEFT's and ParamDB's matmul order differ.
@pytest.mark.parametrize("rank, alpha, stored_rank", [(1, 4.0, 2), (2, 2.0, 2), (4, 4.0, 4)])
def test_a_peft_adapter_imports_as_a_row_that_answers_like_peft(db, model_dir, tmp_path, rank, alpha, stored_rank):
    folder = make_peft_adapter(model_dir, tmp_path / "lora", rank, alpha)
    done = import_peft(db.handle.store, db.handle.models, folder, "venmor", TEXT, {"src": "elsewhere"})
    assert (done.source_rank, done.rank, done.base_check) == (rank, stored_rank, "fingerprint")
    assert db.get("venmor").metadata == {"src": "elsewhere"} and db.query(QUESTION, k=1)[0].id == "venmor"
    ours, _ = paramdb_steps(db, QUESTION, k=1, where={"src": "elsewhere"}, max_new_tokens=6)
    theirs, ids, _ = peft_steps(folder, QUESTION, len(ours))
    assert_same_answer(ours, theirs, ids)


def test_an_rslora_adapter_keeps_its_scaling(db, model_dir, tmp_path):
    folder = make_peft_adapter(model_dir, tmp_path / "lora", 2, 3.0, rslora=True)
    import_peft(db.handle.store, db.handle.models, folder, "venmor", TEXT, {"src": "elsewhere"})
    ours, _ = paramdb_steps(db, QUESTION, k=1, where={"src": "elsewhere"}, max_new_tokens=6)
    theirs, ids, _ = peft_steps(folder, QUESTION, len(ours))
    assert_same_answer(ours, theirs, ids, atol=5e-3)     # B rescaled by 1/sqrt(2), then rounded to fp16


def test_an_exported_row_imports_back_bit_for_bit(db, tmp_path):
    export_peft(db.handle.store, db.handle.models, "quill", tmp_path / "q")
    import_peft(db.handle.store, db.handle.models, tmp_path / "q", "quill-again", "A copy of the quill document.")
    a, b = factors_for_ids(db.handle.store, db.handle.models.lm, ["quill", "quill-again"])
    assert a.layout == b.layout and torch.equal(a.flat, b.flat)


def test_a_higher_rank_row_merges_exactly_with_the_stores_rows(db, model_dir, tmp_path):
    import_peft(db.handle.store, db.handle.models, make_peft_adapter(model_dir, tmp_path / "lora", 4, 8.0), "venmor", TEXT)
    done = export_peft(db.handle.store, db.handle.models, None, tmp_path / "m", question=QUESTION, k=4)
    assert "venmor" in done.hits and done.rank == 3 * 2 + 4
    ours, _ = paramdb_steps(db, QUESTION, k=4, max_new_tokens=6)
    theirs, ids, _ = peft_steps(done.path, QUESTION, len(ours))
    assert_same_answer(ours, theirs, ids)


def test_an_adapter_naming_no_local_model_is_checked_by_shapes(db, model_dir, tmp_path):
    folder = make_peft_adapter(model_dir, tmp_path / "lora", 2, 4.0)
    cfg = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**cfg, "base_model_name_or_path": "org/some-hub-model"}))
    assert import_peft(db.handle.store, db.handle.models, folder, "venmor", TEXT).base_check == "shapes"


def test_a_folder_that_is_not_a_peft_adapter_is_refused(db, tmp_path):
    before = state(db)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInput, match="not a PEFT adapter folder"):
        import_peft(db.handle.store, db.handle.models, tmp_path / "empty", "x", TEXT)
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 4}))
    (tmp_path / "pickled" / "adapter_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(InvalidInput, match="pickle"):
        import_peft(db.handle.store, db.handle.models, tmp_path / "pickled", "x", TEXT)
    assert state(db) == before


def test_a_dora_adapter_is_refused(db, model_dir, tmp_path):
    before = state(db)
    folder = make_peft_adapter(model_dir, tmp_path / "lora", 2, 4.0, use_dora=True)
    with pytest.raises(InvalidInput, match="use_dora"):
        import_peft(db.handle.store, db.handle.models, folder, "x", TEXT)
    assert state(db) == before


def test_an_adapter_for_other_shapes_is_refused(db, tmp_path):
    before = state(db)
    other = save_tiny(tmp_path / "wider", hidden=48)
    with pytest.raises(ModelMismatch, match="48 features|-> 96|48 ->"):
        import_peft(db.handle.store, db.handle.models, make_peft_adapter(other, tmp_path / "lora", 2, 4.0), "x", TEXT)
    assert state(db) == before


def test_an_adapter_for_another_model_of_the_same_shapes_is_refused(db, tmp_path):
    before = state(db)
    other = save_tiny(tmp_path / "other-seed", seed=1)
    with pytest.raises(ModelMismatch, match="fingerprint"):
        import_peft(db.handle.store, db.handle.models, make_peft_adapter(other, tmp_path / "lora", 2, 4.0), "x", TEXT)
    assert state(db) == before


def test_an_adapter_on_other_modules_is_refused(db, model_dir, tmp_path):
    before = state(db)
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(model_dir))
    peft.get_peft_model(base, peft.LoraConfig(target_modules=["q_proj", "v_proj"], r=2)).save_pretrained(tmp_path / "attn")
    with pytest.raises(ModelMismatch, match="lacks module"):
        import_peft(db.handle.store, db.handle.models, tmp_path / "attn", "x", TEXT)
    assert state(db) == before


def test_a_taken_id_is_refused(db, model_dir, tmp_path):
    before = state(db)
    with pytest.raises(DuplicateId):
        import_peft(db.handle.store, db.handle.models, make_peft_adapter(model_dir, tmp_path / "lora", 2, 4.0), "quill", TEXT)
    assert state(db) == before


def test_an_imported_row_is_counted_as_imported(db, model_dir, tmp_path):
    import_peft(db.handle.store, db.handle.models, make_peft_adapter(model_dir, tmp_path / "lora", 2, 4.0), "venmor", TEXT)
    assert db.get("venmor").adapter_kind == "imported"
    assert db.stats()["adapters"]["imported"] == 1


def test_check_repair_never_retrains_a_damaged_imported_adapter_from_its_text(db, model_dir, tmp_path):
    import_peft(db.handle.store, db.handle.models, make_peft_adapter(model_dir, tmp_path / "lora", 2, 4.0), "venmor", TEXT)
    key = db.handle.store.meta.get(["venmor"])[0]["blob_key"]
    db.handle.store.blobs.delete([key])
    report = check(db.handle.store, db.handle.models, repair=True)
    finding = next(f for f in report.findings if f.subject == "venmor")
    assert not finding.repaired and "import it again" in finding.detail and not report.ok
    assert db.handle.store.meta.get(["venmor"])[0]["blob_key"] == key
