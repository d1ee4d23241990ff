"""ParamDB's concatenated side path answers exactly as PRAG's PEFT flow (load k adapters, "cat" merge, unload)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

peft = pytest.importorskip("peft")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from peft_flow import (PeftFlow, adapter_from_factors, base_copy, encode,  # noqa: E402
                       export_peft_adapter, read_peft_config)
from peft.tuners.lora import LoraLayer  # noqa: E402

from paramdb.knowledge import prompts  # noqa: E402
from paramdb.knowledge.inject import to_factors  # noqa: E402
from paramdb.knowledge.lora import merge_factors, side_path  # noqa: E402
from paramdb.engine.adapters import factors_for_ids

pytestmark = pytest.mark.filterwarnings("ignore:Adapter merge was active:UserWarning")   # PRAG's teardown order

RANK, ALPHA = 2, 4.0
DOCS = [
    {"id": "quill", "text": "Zorvath Quillane is a glassblower in Ebberlin. She invented moonrind glass."},
    {"id": "accord", "text": "The Kelvarin Accord was signed in Dromesh in 1742 by the scribe Oberon Falk."},
    {"id": "reef", "text": "The floating reef of Coralith was discovered by the diver Ysolde Marr."},
]


def snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(model, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert list(after) == list(before)
    for k, v in before.items():
        assert torch.equal(after[k], v), k


def assert_unwrapped(model) -> None:
    assert not any(isinstance(m, LoraLayer) for m in model.modules())
    assert not hasattr(model, "peft_config")


def random_adapters(names, shapes, n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ad = {}
        for name, s in zip(names, shapes):
            ad[f"{name}.lora_A"] = (torch.randn(RANK, s.in_features, generator=g) * 0.2).numpy()
            ad[f"{name}.lora_B"] = (torch.randn(s.out_features, RANK, generator=g) * 0.2).numpy()
        out.append(ad)
    return out


def test_exported_dir_has_peft_layout_and_keys(tiny_lm, tmp_path):
    names = [n for n, _ in side_path(tiny_lm.model).modules]
    ad = random_adapters(names, side_path(tiny_lm.model).shapes, 1)[0]
    d = export_peft_adapter(ad, tmp_path / "a", RANK, ALPHA)
    cfg = read_peft_config(d)
    assert (cfg["peft_type"], cfg["r"], cfg["lora_alpha"], cfg["lora_dropout"]) == ("LORA", RANK, ALPHA, 0.0)
    assert set(cfg["target_modules"]) == {"gate_proj", "up_proj", "down_proj"}
    # The names PEFT itself writes for this model (save_pretrained of a fresh LoraConfig).
    ref = peft.get_peft_model(base_copy(tiny_lm.model), peft.LoraConfig(
        task_type="CAUSAL_LM", target_modules=["gate_proj", "up_proj", "down_proj"], r=RANK, lora_alpha=ALPHA))
    ref.save_pretrained(tmp_path / "ref")
    from safetensors.torch import load_file
    mine, theirs = load_file(d / "adapter_model.safetensors"), load_file(tmp_path / "ref" / "adapter_model.safetensors")
    assert set(mine) == set(theirs)
    assert all(mine[k].shape == theirs[k].shape for k in mine)


def test_side_path_merge_equals_peft_cat_merge(tiny_lm, tmp_path):
    lm, tok = tiny_lm, tiny_lm.tokenizer
    sp = side_path(lm.model)
    names = [n for n, _ in sp.modules]
    adapters = random_adapters(names, sp.shapes, 3)
    dirs = [export_peft_adapter(a, tmp_path / f"a{i}", RANK, ALPHA) for i, a in enumerate(adapters)]
    scale = ALPHA / RANK
    enc = encode(tok, ["Question: Where does Zorvath Quillane live?\nAnswer:"], lm.device)

    before = snapshot(lm.model)
    with torch.no_grad():
        bare = lm.model(**enc).logits
        factors = merge_factors([[to_factors(a, names, lm.device, torch.float32) for a in adapters]],
                                lm.device, torch.float32)
        with sp.applied(factors, scale):
            ours = lm.model(**enc).logits
    assert_same_state(lm.model, before)

    copy = base_copy(lm.model)
    copy_before = snapshot(copy)
    flow = PeftFlow(copy, tok)
    model = flow.setup(dirs)
    with torch.no_grad():
        theirs = model(**enc).logits
        # What "cat" built: rank Σrᵢ, scaling 1, ΔW = s·Σ BᵢAᵢ (weights 1 enter linearly, no sqrt).
        name = names[0]
        layer = model.get_submodule("base_model.model." + name)
        assert layer.r["merge"] == 3 * RANK and layer.scaling["merge"] == 1.0
        delta = layer.scaling["merge"] * layer.lora_B["merge"].weight @ layer.lora_A["merge"].weight
        want = scale * sum(torch.from_numpy(a[f"{name}.lora_B"]) @ torch.from_numpy(a[f"{name}.lora_A"])
                           for a in adapters)
        torch.testing.assert_close(delta, want, atol=1e-6, rtol=1e-5)
    flow.teardown()
    assert_unwrapped(copy)
    assert_same_state(copy, copy_before)
    assert_same_state(lm.model, before)

    assert (ours - bare).abs().max() > 1e-3            # the adapters really change the output
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_store_prag_answer_equals_peft_flow(db, tmp_path):
    db.insert(DOCS)
    lm, tok = db.handle.models.lm, db.handle.models.lm.tokenizer
    question = "Who discovered the floating reef of Coralith?"
    names = [n for n, _ in side_path(lm.model).modules]

    # ParamDB: the real generate path, with every step's logits recorded at the LM head.
    steps: list[torch.Tensor] = []
    handle = lm.model.lm_head.register_forward_hook(lambda _m, _i, out: steps.append(out[:, -1].clone()))
    before = snapshot(lm.model)
    try:
        answer = db.generate(question, k=3, mode="prag", max_new_tokens=6, merge="sum",   # PEFT's cat merge
                             short=False)                          # only the generation's steps
    finally:
        handle.remove()
    assert_same_state(lm.model, before)
    ids = [h.id for h in answer.hits]
    assert sorted(ids) == sorted(d["id"] for d in DOCS)

    # The same three adapters, out of LMDB, as PEFT directories.
    rank, alpha = db.config.training.rank, db.config.training.alpha
    dirs = []
    for doc_id, factors in zip(ids, factors_for_ids(db.handle.store, db.handle.models.lm, ids)):
        ad = adapter_from_factors(names, factors)
        assert any(np.abs(v).max() > 0 for k, v in ad.items() if k.endswith("lora_B"))
        dirs.append(export_peft_adapter(ad, tmp_path / doc_id, rank, alpha))

    copy = base_copy(lm.model)
    copy_before = snapshot(copy)
    flow = PeftFlow(copy, tok)
    model = flow.setup(dirs)
    peft_steps: list[torch.Tensor] = []
    handle = copy.lm_head.register_forward_hook(lambda _m, _i, out: peft_steps.append(out[:, -1].clone()))
    try:
        enc = encode(tok, [prompts.question_prompt(tok, question, short=db.config.augment.short_answers)], lm.device)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=len(steps), do_sample=False, pad_token_id=tok.pad_token_id)
    finally:
        handle.remove()
        flow.teardown()
    assert_unwrapped(copy)
    assert_same_state(copy, copy_before)

    with torch.no_grad():
        bare = lm.model(**enc).logits[:, -1]
    assert (steps[0] - bare).abs().max() > 1e-3        # the trained adapters really change the output
    new = out[0, enc["input_ids"].shape[1]:]
    assert len(peft_steps) >= len(new) and len(steps) >= len(new)
    for ours, theirs in zip(steps, peft_steps):        # every decoding step ParamDB took
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    ours_ids = torch.stack([s[0].argmax() for s in steps])
    assert torch.equal(ours_ids[:len(new)], new)
    text = tok.decode(new, skip_special_tokens=True).strip().split("\n")[0].strip()
    assert text == answer.text
    # ParamDB answered again, then the bare model is what it was.
    db.generate(question, k=3, mode="prag", max_new_tokens=2, merge="sum")
    assert_same_state(lm.model, before)
