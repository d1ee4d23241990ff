"""Helpers for the PEFT interop tests: a tiny model saved as a folder (so an exported adapter can name a
base model transformers loads), a store on it, and PEFT's logits on the same prompts."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from conftest import FAST_TRAINING, make_tiny_lm
from paramdb import ParamDB
from paramdb.knowledge import prompts

DOCS = [
    {"id": "quill", "text": "Zorvath Quillane is a glassblower in Ebberlin. She invented moonrind glass."},
    {"id": "accord", "text": "The Kelvarin Accord was signed in Dromesh in 1742 by the scribe Oberon Falk."},
    {"id": "reef", "text": "The floating reef of Coralith was discovered by the diver Ysolde Marr."},
]
QUESTION = "Who discovered the floating reef of Coralith?"


def save_tiny(folder: Path, seed: int = 0, hidden: int = 32) -> Path:
    lm = make_tiny_lm(seed) if hidden == 32 else _sized(seed, hidden)
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    return folder


def _sized(seed: int, hidden: int):
    from transformers import LlamaForCausalLM

    lm = make_tiny_lm(seed)
    cfg = lm.model.config
    cfg.hidden_size, cfg.intermediate_size = hidden, hidden * 2
    torch.manual_seed(seed)
    lm.model = LlamaForCausalLM(cfg)
    return lm


def open_store(path: Path, model_folder: Path, embedder, create: bool = True) -> ParamDB:
    return ParamDB.open(path, create=create, model=str(model_folder), embedder=embedder, precision="fp32",
                        training=FAST_TRAINING if create else None)


def paramdb_steps(db: ParamDB, question: str, **kw) -> tuple[list[torch.Tensor], str]:
    """Every decoding step's last-position logits of ``db.generate(question, mode="prag", **kw)``, and its whole
    generation (``short=False``: the short-answer pass would add steps of its own)."""  # mode= overrides
    steps: list[torch.Tensor] = []
    head = db.handle.models.lm.model.lm_head
    handle = head.register_forward_hook(lambda _m, _i, out: steps.append(out[:, -1].clone()))
    try:
        answer = db.generate(question, **{"mode": "prag", "short": False, **kw})
    finally:
        handle.remove()
    return steps, answer.text


def peft_steps(adapter_dir: Path, question: str, n: int, short: bool | None = None
               ) -> tuple[list[torch.Tensor], list[int], object]:
    """Load the base model named in the adapter's config and the adapter with plain transformers + PEFT
    (nothing of ParamDB's), decode ``n`` greedy tokens, return each step's logits and the tokens. ``short``:
    the prompt style of the store the adapter came from (default: a new store's, as the tests make)."""
    from paramdb.config import NEW_STORE_AUGMENT

    short = NEW_STORE_AUGMENT.short_answers if short is None else short
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_path = json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(base_path)
    model = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
    tok.padding_side = "left"
    enc = tok([prompts.question_prompt(tok, question, short=short)], return_tensors="pt", add_special_tokens=False,
              return_token_type_ids=False)
    steps: list[torch.Tensor] = []
    handle = base.lm_head.register_forward_hook(lambda _m, _i, out: steps.append(out[:, -1].clone()))
    try:
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id)
    finally:
        handle.remove()
    return steps, out[0, enc["input_ids"].shape[1]:].tolist(), model


def assert_same_answer(ours: list[torch.Tensor], theirs: list[torch.Tensor], their_ids: list[int],
                       atol: float = 1e-4) -> float:
    """Same greedy tokens at every step ParamDB took, logits within ``atol``; returns the largest difference."""
    assert len(theirs) >= len(their_ids) and len(ours) >= 1
    worst = 0.0
    for a, b in zip(ours, theirs):
        worst = max(worst, (a - b).abs().max().item())
        torch.testing.assert_close(a, b, atol=atol, rtol=0)
    assert [int(s[0].argmax()) for s in ours][:len(their_ids)] == their_ids[:len(ours)]
    return worst
