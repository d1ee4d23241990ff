"""Training the translator from documents: two teachers, one loop.

Every document brings its augmentation samples (augment.py: the passage, question -> sentence). The loss per
document is the mean token loss of its samples through the adapter the translator writes for it (the LM loss
both published systems use), plus the teacher's term:

- ``adapter`` (DyPRAG): the relative squared distance between the written update and the document's trained
  one, ||B'A' - BA||² / ||BA||², averaged over modules. Computed from r x r Gram matrices, never as [out, in]
  products (the pair [B', -B][A'; A] has rank 2r, so the norm costs O((in + out)·r²)).
- ``context`` (Doc-to-LoRA): KL from the base model *with the passage in its prompt* to the model with the
  written adapter and no passage, on each question sample's answer tokens: the adapter learns to make the
  model answer as it would reading the document. Needs no trained adapters, so it can learn from any text.

Documents are split by document (never by sample) into training and held-out sets; the held-out loss (LM loss
of held-out documents' samples through their written adapters) is reported every epoch beside the loss of the
same samples with no adapter at all, the bar a useful translator must clear.
"""
from __future__ import annotations

import hashlib
import math
import resource
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from . import prompts
from .lora import side_path
from .models import LoadedModel
from .settings import TrainSettings
from .train import Sample, _encode, _token_chunks
from .translator import Provenance, Translator, TranslatorSettings, features, new_translator

TEACHERS = ("adapter", "context")
Progress = Callable[[dict], None]    # one event per step and per epoch (see distill())
Adapter = dict[str, np.ndarray]


@dataclass
class DistillDoc:
    """One document to learn from: its text, its samples and (adapter teacher) its trained adapter, or a
    callable that reads it, so that adapters are read one step at a time and memory stays bounded."""

    key: str
    text: str
    samples: list[Sample]
    adapter: Adapter | Callable[[], Adapter] | None = None


@dataclass(frozen=True)
class DistillSettings:
    teacher: str = "context"
    epochs: int = 4
    lr: float = 1e-3
    docs_per_step: int = 4
    held_out: float = 0.1             # fraction of documents (at least one when there are 2+) kept out
    distance_weight: float = 1.0      # adapter teacher: weight of the relative update distance
    kl_weight: float = 1.0            # context teacher: weight of the KL to the model reading the passage
    lm_weight: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.teacher not in TEACHERS:
            raise ValueError(f"unknown teacher {self.teacher!r}; valid: {', '.join(TEACHERS)}")


@dataclass
class DistillReport:
    docs: int = 0
    held_out_docs: int = 0
    epochs: list[dict] = field(default_factory=list)   # per epoch: train loss, held-out loss, seconds
    base_loss: float | None = None
    seconds: float = 0.0
    peak_rss_mb: float = 0.0

    @property
    def held_out_loss(self) -> float | None:
        return self.epochs[-1]["held_out_loss"] if self.epochs else None


def split(docs: list[DistillDoc], fraction: float) -> tuple[list[DistillDoc], list[DistillDoc]]:
    """(train, held out) by a hash of each document's key: the same document always lands on the same side."""
    if len(docs) < 2 or fraction <= 0:
        return docs, []
    ranked = sorted(docs, key=lambda d: hashlib.sha256(d.key.encode()).hexdigest())
    n_out = min(len(docs) - 1, max(1, round(fraction * len(docs))))
    out = {d.key for d in ranked[:n_out]}
    return [d for d in docs if d.key not in out], [d for d in docs if d.key in out]


def provenance(keys: list[str], teacher: str) -> Provenance:
    digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()
    return Provenance(count=len(keys), sha256=digest, teacher=teacher)


def _relative_distance(a_gen, b_gen, a_ref, b_ref) -> torch.Tensor:
    """||B'A' - BA||² / ||BA||² for one module, via the Gram trick (see module docstring)."""
    b = torch.cat([b_gen, -b_ref], dim=1)                # [out, 2r]
    a = torch.cat([a_gen, a_ref], dim=0)                 # [2r, in]
    diff = ((b.T @ b) * (a @ a.T)).sum()
    ref = ((b_ref.T @ b_ref) * (a_ref @ a_ref.T)).sum()
    return diff / ref.clamp_min(1e-12)


def _question_of(tokenizer, prompt: str) -> tuple[str, bool]:
    """The question inside a prompt made by ``prompts.question_prompt`` (no passages), and whether it was the
    short-answer prompt (augment.py's short-answer samples), so the teacher asks in the same style."""
    for short in (False, True):
        head, _, tail = prompts.question_prompt(tokenizer, "\x00", short=short).partition("\x00")
        if prompt.startswith(head) and prompt.endswith(tail) and len(prompt) >= len(head) + len(tail):
            return prompt[len(head):len(prompt) - len(tail)], short
    return prompt, False


def _with_passage(tokenizer, prompt: str, passage: str) -> str:
    """The icl prompt asking the same question as ``prompt``, in the same style, with ``passage`` in context."""
    question, short = _question_of(tokenizer, prompt)
    return prompts.question_prompt(tokenizer, question, [passage], short=short)


class _Encoded:
    """Encoded samples per document, plus (context teacher) each question sample re-encoded with the passage
    in the prompt (the icl prompt), so teacher and student score the very same answer tokens."""

    def __init__(self, lm: LoadedModel, docs: list[DistillDoc], t: TrainSettings, with_context: bool):
        self.rows: list[list] = []
        self.context: list[list] = []
        for d in docs:
            self.rows.append(_encode(lm.tokenizer, d.samples, t.max_length))
            if with_context:
                self.context.append([
                    _encode(lm.tokenizer, [Sample(_with_passage(lm.tokenizer, s.prompt, d.text), s.target)],
                            t.max_length * 4)[0] if s.prompt else None
                    for s in d.samples])


def _pad(rows, pad: int, device):
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (i, l) in enumerate(rows):
        ids[r, :len(i)], labels[r, :len(l)], mask[r, :len(i)] = torch.tensor(i), torch.tensor(l), 1
    return ids.to(device), labels.to(device), mask.to(device)


def _answer_logits(lm, rows, pad, factors=None, scale=1.0):
    """Logits at every answer-token position of ``rows`` (concatenated in row order), labels, and the mask."""
    ids, labels, mask = _pad(rows, pad, lm.device)
    sp = side_path(lm.model)
    backbone, head = lm.model.get_decoder(), lm.model.get_output_embeddings()
    if factors is not None:
        with sp.applied(factors, scale):
            hidden = backbone(input_ids=ids, attention_mask=mask).last_hidden_state
    else:
        sp.clear()
        hidden = backbone(input_ids=ids, attention_mask=mask).last_hidden_state
    tgt = labels[:, 1:]
    keep = tgt != -100
    return head(hidden[:, :-1][keep]).float(), tgt[keep], keep


def _kl_term(lm, enc, idx, chunk, student_logits, keep, pad, tok_count) -> torch.Tensor:
    """KL(teacher with passage || student with adapter) over the chunk's question samples' answer tokens."""
    ctx_rows, pick, offset = [], [], 0
    for (j, _, n), c in zip(chunk, keep.sum(1).tolist()):
        teacher_row = enc.context[idx[j]][n]
        if teacher_row is not None:
            ctx_rows.append(teacher_row)
            pick.append((j, offset, c))
        offset += c
    kl = torch.zeros((), device=lm.device)
    if not ctx_rows:
        return kl
    with torch.no_grad():
        t_logits, _, t_keep = _answer_logits(lm, ctx_rows, pad)
    t_off = 0
    for (j, off, c), tc in zip(pick, t_keep.sum(1).tolist()):
        n = min(c, tc)      # the same answer tokens; truncation can only shorten one side
        if n:
            p_t = torch.log_softmax(t_logits[t_off + tc - n:t_off + tc], -1)
            p_s = torch.log_softmax(student_logits[off + c - n:off + c], -1)
            kl = kl + (p_t.exp() * (p_t - p_s)).sum() / tok_count[j]
        t_off += tc
    return kl


def _doc_losses(lm, translator, feats, enc, idx, t: TrainSettings, s: DistillSettings, pad, train: bool,
                refs=None) -> torch.Tensor:
    """Sum over documents ``idx`` of each one's loss (LM + teacher term); backpropagates when ``train``."""
    total = torch.zeros((), device=lm.device)
    rows = [(j, e, n) for j, d in enumerate(idx) for n, e in enumerate(enc.rows[d])]   # n: sample index
    tok_count = torch.zeros(len(idx), device=lm.device)
    for j, (_, labels), _ in rows:
        tok_count[j] += sum(1 for x in labels[1:] if x != -100)
    for chunk in _token_chunks(rows, t.max_batch_tokens):
        doc_of_row = torch.tensor([j for j, _, _ in chunk], device=lm.device)
        fac = translator.factors(feats[idx])
        per_row = [(a, b[doc_of_row]) for a, b in fac]
        logits, tgt, keep = _answer_logits(lm, [e for _, e, _ in chunk], pad, per_row, t.scale)
        tok_loss = torch.nn.functional.cross_entropy(logits, tgt, reduction="none")
        row_doc = doc_of_row.unsqueeze(1).expand_as(keep)[keep]
        loss = s.lm_weight * (tok_loss / tok_count[row_doc]).sum()
        if train and s.teacher == "context":
            loss = loss + s.kl_weight * _kl_term(lm, enc, idx, chunk, logits, keep, pad, tok_count)
        if train:
            (loss / len(idx)).backward()
        total = total + loss.detach()
    if train and s.teacher == "adapter":
        fac = translator.factors(feats[idx])
        dist = torch.zeros((), device=lm.device)
        for j, d in enumerate(idx):
            ref = refs(d)
            for m, (a, b) in enumerate(fac):
                dist = dist + _relative_distance(a[0], b[j], *ref[m]) / len(fac)
        (s.distance_weight * dist / len(idx)).backward()
        total = total + s.distance_weight * dist.detach()
    return total


def _ref(doc: DistillDoc, names: list[str], device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The document's trained adapter as per-module (A, B), read now (adapters are not all held at once)."""
    if doc.adapter is None:
        raise ValueError(f"document {doc.key!r} has no trained adapter for the adapter teacher")
    adapter = doc.adapter() if callable(doc.adapter) else doc.adapter
    return [(torch.as_tensor(np.asarray(adapter[f"{n}.lora_A"], dtype=np.float32), device=device),
             torch.as_tensor(np.asarray(adapter[f"{n}.lora_B"], dtype=np.float32), device=device))
            for n in names]


def held_out_loss(lm, translator, feats, enc, t: TrainSettings, pad, with_adapter: bool = True) -> float:
    """Mean over documents of each one's mean sample-token loss, through its written adapter (or none)."""
    if not enc.rows:
        return float("nan")
    total = 0.0
    with torch.no_grad():
        for d in range(len(enc.rows)):
            if with_adapter:
                total += float(_doc_losses(lm, translator, feats, enc, [d], t, DistillSettings(), pad, False))
            else:
                logits, tgt, _ = _answer_logits(lm, enc.rows[d], pad)
                total += float(torch.nn.functional.cross_entropy(logits, tgt))
    return total / len(enc.rows)


def train_translator(lm: LoadedModel, docs: list[DistillDoc], ts: TranslatorSettings, s: DistillSettings,
                     t: TrainSettings, progress: Progress | None = None) -> tuple[Translator, DistillReport]:
    """Train a new translator on ``docs``; nothing is written anywhere (the caller stores the result)."""
    if not docs:
        raise ValueError("no documents to learn from")
    start = time.perf_counter()
    report = DistillReport(docs=len(docs))
    train_docs, held = split(docs, s.held_out)
    report.held_out_docs = len(held)
    translator = new_translator(lm, ts).to(lm.device)
    names = [n for n, _ in side_path(lm.model).modules]
    pad = lm.tokenizer.pad_token_id or 0
    f_train = features(lm, [d.text for d in train_docs], ts).to(lm.device)
    f_held = features(lm, [d.text for d in held], ts).to(lm.device)
    e_train = _Encoded(lm, train_docs, t, s.teacher == "context")
    e_held = _Encoded(lm, held, t, False)
    refs = (lambda d: _ref(train_docs[d], names, lm.device)) if s.teacher == "adapter" else None
    opt = torch.optim.Adam(translator.parameters(), lr=s.lr)
    rng = np.random.default_rng(s.seed)
    report.base_loss = held_out_loss(lm, translator, f_held, e_held, t, pad, with_adapter=False) if held else None
    n_steps = math.ceil(len(train_docs) / s.docs_per_step)
    for epoch in range(s.epochs):
        translator.train()
        order, losses = rng.permutation(len(train_docs)).tolist(), []
        for step in range(n_steps):
            idx = order[step * s.docs_per_step:(step + 1) * s.docs_per_step]
            opt.zero_grad(set_to_none=True)
            loss = _doc_losses(lm, translator, f_train, e_train, idx, t, s, pad, train=True, refs=refs)
            torch.nn.utils.clip_grad_norm_(translator.parameters(), 1.0)
            opt.step()
            losses.append(float(loss) / len(idx))
            if progress:
                progress({"event": "step", "epoch": epoch + 1, "epochs": s.epochs, "step": step + 1,
                          "steps": n_steps, "loss": losses[-1]})
        translator.eval()
        row = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)),
               "held_out_loss": held_out_loss(lm, translator, f_held, e_held, t, pad) if held else None,
               "seconds": time.perf_counter() - start}
        report.epochs.append(row)
        if progress:
            progress({"event": "epoch", **row, "base_loss": report.base_loss})
    side_path(lm.model).clear()
    report.seconds = time.perf_counter() - start
    report.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return translator.cpu(), report
