"""The two per-document training baselines ParamDB's batched trainer replaces, re-implemented with PEFT.

(a) PRAG's published procedure (github.com/oneal2000/PRAG, src/encode.py ``train``), per document:
    wrap the model with a fresh LoRA adapter (``get_peft_model``, LoraConfig r/α, targets gate/up/down_proj,
    lora_dropout 0); ``torch.optim.AdamW`` over the LoRA parameters; batch size 1 (one sample per optimizer
    step, samples in order, no shuffle: PRAG's DataLoader has ``shuffle=False``); every sample right-padded to
    3,000 tokens (``TrainingData``: pad id on the right, attention mask 0, labels -100 on padding); the loss
    is the Hugging Face one, ``model(input_ids, attention_mask=..., labels=...).loss``, i.e. full logits over
    all 3,000 positions; afterwards the adapter is taken out (``get_peft_model_state_dict``; PRAG writes it
    with ``save_pretrained``), the model unloaded (``unload()``) and ``gc.collect()`` run before the next one.
(b) the plain sequential loop: the same, but every sample is its own length (no padding).

Deliberate differences from PRAG's script, so that all three trainers learn the same thing from the same data:
the samples are ParamDB's (``build_samples``: passage + question→sentence), the loss is on the target tokens
only (labels -100 on the prompt part as well as on padding; PRAG's ``labels = input_ids.copy()`` also trains
on the prompt), AdamW has ``weight_decay=0`` (ParamDB's Adam has none; PRAG leaves PyTorch's 0.01), the
hyper-parameters (rank, α, lr, epochs) come from the store's TrainSettings, and each document's LoRA init is
seeded from ParamDB's per-document seed (PRAG reuses one saved random init for every passage). Tokenization is
ParamDB's (prompt + target, no special tokens, cut at ``max_length`` tokens) before padding.

PEFT wraps Linears in place, so it works on a deep copy of the base model without ParamDB's side-path hooks
(``peft_flow.base_copy``); the model ParamDB uses is never touched. Adapters come back in ParamDB's format:
``{"<module>.lora_A": [r, in], "<module>.lora_B": [out, r]}`` float32 numpy, ready for ``to_factors`` /
``merge_factors`` / ``greedy(..., factors=..., scale=α/r)``.
"""
from __future__ import annotations

import gc
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peft_flow import base_copy  # noqa: E402

from paramdb.knowledge.lora import DEFAULT_TARGETS, side_path  # noqa: E402
from paramdb.knowledge.models import LoadedModel  # noqa: E402
from paramdb.knowledge.settings import TrainSettings  # noqa: E402
from paramdb.knowledge.train import Sample, doc_seed  # noqa: E402

PRAG_MAX_LENGTH = 3000      # PRAG's TrainingData(max_length=3000), padding="max_length"
IGNORE = -100


@dataclass
class RunStats:
    """What a baseline run did: seconds per document (wall, whole per-document procedure), steps, tokens."""

    seconds: list[float] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)   # of which: the optimizer steps alone
    doc_steps: list[int] = field(default_factory=list)        # steps run per document
    doc_epochs: list[int] = field(default_factory=list)       # epochs run per document (stop_loss may end it)
    full_steps: list[int] = field(default_factory=list)       # steps the epochs asked for (before max_steps)
    samples: list[int] = field(default_factory=list)          # samples per document
    steps: int = 0
    tokens: int = 0           # positions fed through the model (padding included)
    target_tokens: int = 0


def encode_sample(tokenizer, s: Sample, max_length: int) -> tuple[list[int], list[int]]:
    """ParamDB's tokenization: prompt + target without special tokens, labels -100 on the prompt, cut."""
    p = tokenizer(s.prompt, add_special_tokens=False).input_ids if s.prompt else []
    t = tokenizer(s.target, add_special_tokens=False).input_ids
    return (p + t)[:max_length], ([IGNORE] * len(p) + t)[:max_length]


def to_tensors(ids: list[int], labels: list[int], pad_id: int, pad_to: int | None, device):
    """One batch-size-1 example; with ``pad_to`` right-padded to that length as PRAG's TrainingData does."""
    ids, labels = list(ids), list(labels)
    if pad_to is not None:
        ids, labels = ids[:pad_to], labels[:pad_to]
        mask = [1] * len(ids) + [0] * (pad_to - len(ids))
        labels += [IGNORE] * (pad_to - len(ids))
        ids += [pad_id] * (pad_to - len(ids))
    else:
        mask = [1] * len(ids)
    t = lambda x: torch.tensor([x], dtype=torch.long, device=device)  # noqa: E731
    return t(ids), t(mask), t(labels)


def peft_config(s: TrainSettings, targets=DEFAULT_TARGETS) -> LoraConfig:
    return LoraConfig(task_type="CAUSAL_LM", r=s.rank, lora_alpha=s.alpha, target_modules=list(targets),
                      lora_dropout=0.0, inference_mode=False)


def _to_paramdb(state: dict[str, torch.Tensor], names: list[str]) -> dict[str, np.ndarray]:
    """PEFT's ``base_model.model.<module>.lora_A.weight`` keys → ParamDB's ``<module>.lora_A``."""
    out = {}
    for key, value in state.items():
        if not key.startswith("base_model.model.") or not key.endswith(".weight"):
            raise ValueError(f"unexpected PEFT adapter key {key!r}")
        out[key[len("base_model.model."):-len(".weight")]] = value.detach().float().cpu().numpy().copy()
    want = {f"{n}.lora_{x}" for n in names for x in "AB"}
    if set(out) != want:
        missing, extra = sorted(want - set(out))[:3], sorted(set(out) - want)[:3]
        raise ValueError(f"PEFT adapter keys do not match ParamDB's modules (missing {missing}, extra {extra})")
    return out


class PeftTrainer:
    """One document at a time, PRAG's way, on a private copy of ``lm``'s model.

    ``pad_to=3000`` is PRAG's padding (a); ``pad_to=None`` the sequential loop without padding (b).
    ``stop_loss`` gives the loop ParamDB's per-document stopping rule (``TrainSettings.stop_loss``): a document
    stops after the first epoch whose mean training loss is below it, so a comparison with ParamDB's default
    trainer is like for like.
    """

    def __init__(self, lm: LoadedModel, s: TrainSettings, pad_to: int | None = PRAG_MAX_LENGTH,
                 epochs: int | None = None, max_steps: int | None = None, stop_loss: float = 0.0):
        self.lm, self.s, self.pad_to, self.max_steps, self.stop_loss = lm, s, pad_to, max_steps, stop_loss
        self.epochs = s.epochs if epochs is None else epochs
        self.names = [n for n, _ in side_path(lm.model).modules]
        self.model = base_copy(lm.model)          # PEFT wraps in place: never ParamDB's model
        self.model.requires_grad_(False)
        self.pad_id = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
        self.stats = RunStats()

    def train_one(self, samples: list[Sample], key: str) -> dict[str, np.ndarray]:
        if not samples:
            raise ValueError("a document needs at least one training sample")
        s, device = self.s, self.lm.device
        t0 = time.perf_counter()
        torch.manual_seed(doc_seed(s.seed, key))                  # the fresh adapter's random A
        model = get_peft_model(self.model, peft_config(s))
        model.train()
        encoded = [encode_sample(self.lm.tokenizer, x, s.max_length) for x in samples]
        batches = [to_tensors(i, l, self.pad_id, self.pad_to, device) for i, l in encoded]
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=s.lr, weight_decay=0.0)
        t1 = time.perf_counter()
        steps = 0
        for _ in range(self.epochs):                               # batch size 1, in order (shuffle=False)
            losses = []
            for ids, mask, labels in batches:
                if self.max_steps and steps >= self.max_steps:     # timing only: cut the run short
                    break
                opt.zero_grad()
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
                loss.backward()
                opt.step()
                losses.append(loss.item())
                steps += 1
                self.stats.tokens += ids.shape[1]
                self.stats.target_tokens += int((labels[:, 1:] != IGNORE).sum())
            if not losses:
                break
            # ParamDB's stopping rule, on this document's own losses: stop after an epoch whose mean is low.
            if self.stop_loss and sum(losses) / len(losses) < self.stop_loss:
                break
        self.stats.steps += steps
        self.stats.doc_steps.append(steps)
        self.stats.doc_epochs.append(-(-steps // len(batches)))
        self.stats.full_steps.append(len(batches) * self.epochs)
        self.stats.samples.append(len(batches))
        self.stats.step_seconds.append(time.perf_counter() - t1)
        adapter = _to_paramdb(get_peft_model_state_dict(model), self.names)
        base = model.unload()
        if base is not self.model:
            raise RuntimeError("PEFT unload returned a different model object")
        if hasattr(self.model, "peft_config"):                   # so the next get_peft_model starts clean
            del self.model.peft_config
        del model, opt, params, batches
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        gc.collect()
        self.stats.seconds.append(time.perf_counter() - t0)
        return adapter

    def train(self, docs: list[list[Sample]], keys: list[str], progress=None) -> list[dict[str, np.ndarray]]:
        out = []
        for i, (samples, key) in enumerate(zip(docs, keys)):
            out.append(self.train_one(samples, key))
            if progress:
                progress(i + 1, len(docs))
        return out

    def close(self) -> None:
        self.model = None
        gc.collect()


def train_prag_reference(lm: LoadedModel, docs: list[list[Sample]], keys: list[str], s: TrainSettings,
                         epochs: int | None = None, max_length: int = PRAG_MAX_LENGTH,
                         max_steps: int | None = None, progress=None
                         ) -> tuple[list[dict[str, np.ndarray]], RunStats]:
    """Baseline (a): PRAG's procedure, every sample padded to ``max_length`` (3,000) tokens.

    ``max_steps`` stops each document after that many optimizer steps (for timing only: padded to a fixed
    length, every step costs the same, so a few steps extrapolate well; the adapter is then unfinished)."""
    tr = PeftTrainer(lm, s, pad_to=max_length, epochs=epochs, max_steps=max_steps)
    try:
        return tr.train(docs, keys, progress), tr.stats
    finally:
        tr.close()


def train_sequential(lm: LoadedModel, docs: list[list[Sample]], keys: list[str], s: TrainSettings,
                     epochs: int | None = None, progress=None, stop_loss: float = 0.0
                     ) -> tuple[list[dict[str, np.ndarray]], RunStats]:
    """Baseline (b): the same per-document PEFT loop, batch size 1, no padding; with ``stop_loss`` each
    document stops as ParamDB's trainer stops it."""
    tr = PeftTrainer(lm, s, pad_to=None, epochs=epochs, stop_loss=stop_loss)
    try:
        return tr.train(docs, keys, progress), tr.stats
    finally:
        tr.close()
