"""Batched greedy decoding, optionally through the LoRA side path (one set of factors per row)."""
from __future__ import annotations

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from .budget import context_window
from .lora import side_path
from .models import LoadedModel


def _newline_ids(tokenizer) -> torch.Tensor:
    """Token ids whose text holds a newline (computed once per tokenizer)."""
    ids = getattr(tokenizer, "_paramdb_newline_ids", None)
    if ids is None:
        vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        found = [i for i, t in enumerate(vocab) if t is not None and ("\n" in t or "Ċ" in t)]
        ids = torch.tensor(found or [-1])
        tokenizer._paramdb_newline_ids = ids
    return ids


class _StopAtNewline(StoppingCriteria):
    """Ends a row once it has written a newline: answers and augmentations are one line each."""

    def __init__(self, tokenizer, prompt_len: int):
        self.newline, self.prompt_len = _newline_ids(tokenizer), prompt_len

    def __call__(self, input_ids, scores, **kwargs):
        new = input_ids[:, self.prompt_len:]
        return torch.isin(new, self.newline.to(new.device)).any(dim=1)


def greedy(lm: LoadedModel, prompts: list[str], max_new_tokens: int, stop_at_newline: bool = True,
           factors=None, scale: float = 1.0) -> list[str]:
    """Continue each prompt greedily; with ``factors`` (per-row side-path factors) the adapters apply."""
    tok = lm.tokenizer
    side, tok.padding_side = tok.padding_side, "left"     # decoder-only generation pads on the left
    try:
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False,
                  return_token_type_ids=False).to(lm.device)
    finally:
        tok.padding_side = side
    width = enc.input_ids.shape[1]
    if width + max_new_tokens > context_window(lm):   # callers fit their prompts (budget.py): this is a bug
        raise ValueError(f"prompt of {width} tokens plus {max_new_tokens} new ones exceeds the model's "
                         f"{context_window(lm)}-token context")
    stops = StoppingCriteriaList([_StopAtNewline(tok, width)]) if stop_at_newline else None
    sp = side_path(lm.model)
    with torch.no_grad():
        if factors is not None:
            sp.set(factors, scale)
        try:
            out = lm.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=tok.pad_token_id, stopping_criteria=stops)
        finally:
            sp.clear()
    texts = tok.batch_decode(out[:, width:], skip_special_tokens=True)
    return [t.strip().split("\n")[0].strip() if stop_at_newline else t.strip() for t in texts]
