"""Constrained span selection: every word-boundary span of a generation, scored by the base model.

The short answer may only be a span of the generation, so instead of letting the model write freely and
checking its copy afterwards, every candidate span is scored as the answer: its tokens' log-likelihood after
the prompt (question, generation, "Short answer:"), plus the likelihood of stopping right after it (a newline
or end of text), divided by its token count plus one. The question's own words add answer-type cues
(:mod:`paramdb.knowledge.cues`), and a margin decides whether any span is trusted at all.

Cost: one batched forward pass over the prompts, whose key/value cache is then shared by one short
continuation per start word (the generation's words from there on, at most ``max_words`` of them), all
questions' continuations in a second batched pass. Every span ending inside a start's continuation is scored
from that one row, so n words cost n short rows, not n² candidates.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

from .generate import _newline_ids
from .models import LoadedModel

MAX_SPAN_WORDS = 6
MAX_CONTINUATION_TOKENS = 48    # a start's continuation is cut to this; spans ending past it are not scored
# A span never starts or ends with one of these (no answer is "of Paris" or "Paris was"). A span may start
# with an article, which scoring ignores (SQuAD normalisation drops it), but never end with one.
FUNCTION_WORDS = frozenset("""a an the of in on at by to for from with and or but was were is are be been has had
have who whom whose which that this these those it its he she his her they their them as into than then also
where when while after before during until since""".split())
# Nor holds one of these inside: a span with a copula or a relative pronoun is a clause, not an answer.
CLAUSE_WORDS = frozenset("is was are were be been being has had have who whom whose which that".split())
_WORD = re.compile(r"\S+")
_EDGE = ".,;:!?\"'()[]"


@dataclass(frozen=True)
class Span:
    """Characters [start, end) of the generation, with the model's score of them as the answer."""

    start: int
    end: int
    text: str
    logprob: float           # sum over the span's tokens and the stop
    tokens: int              # the span's tokens plus one (the stop)
    first: float = 0.0       # the first token's log-probability (where the answer starts)
    stop: float = 0.0        # the stop's log-probability (where it ends)

    @property
    def score(self) -> float:
        """Length-normalised log-likelihood (mean per token, the stop included)."""
        return self.logprob / self.tokens


def words(generation: str) -> list[tuple[int, int]]:
    """Character ranges of the generation's words, edge punctuation trimmed; words that are only punctuation
    are dropped."""
    out = []
    for m in _WORD.finditer(generation):
        s, e = m.start(), m.end()
        while s < e and generation[s] in _EDGE:
            s += 1
        while e > s and generation[e - 1] in _EDGE:
            e -= 1
        if s < e:
            out.append((s, e))
    return out


def _clause_break(generation: str, a: tuple[int, int], b: tuple[int, int]) -> bool:
    """True where a clause ends between word ``a`` and the next word ``b`` (punctuation or a newline): a span
    holds one phrase ("Dimwam", not "Dimwam, a small town")."""
    gap = generation[a[1]:b[0]]
    return "\n" in gap or any(ch in gap for ch in ".!?;:,()\"")


def starts(generation: str, max_words: int = MAX_SPAN_WORDS) -> list[tuple[int, list[int]]]:
    """For each word a span may start at: its index and the indices of the words a span from it may end at."""
    ws = words(generation)
    low = [generation[s:e].lower() for s, e in ws]
    out = []
    for i in range(len(ws)):
        if low[i] in FUNCTION_WORDS and low[i] not in ("a", "an", "the"):
            continue
        ends = []
        for j in range(i, min(len(ws), i + max_words)):
            if j > i and (_clause_break(generation, ws[j - 1], ws[j]) or low[j] in CLAUSE_WORDS):
                break
            if low[j] not in FUNCTION_WORDS:
                ends.append(j)
        if ends:
            out.append((i, ends))
    return out


def _stop_ids(tokenizer) -> torch.Tensor:
    ids = [int(i) for i in _newline_ids(tokenizer).tolist() if i >= 0]
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    return torch.tensor(sorted(set(ids)))


def _continuation(tokenizer, text: str, lead: str) -> tuple[list[int], list[int]]:
    """Token ids of ``lead + text`` and each token's end offset in ``text`` (fast tokenizers' offsets)."""
    enc = tokenizer(lead + text, add_special_tokens=False, return_offsets_mapping=True)
    n = MAX_CONTINUATION_TOKENS
    return list(enc.input_ids)[:n], [e - len(lead) for _, e in enc.offset_mapping][:n]


def score_spans(lm: LoadedModel, prompts: list[str], generations: list[str], lead: str = " ",
                max_words: int = MAX_SPAN_WORDS, batch_size: int = 8) -> list[list[Span]]:
    """Every candidate span of each generation, scored as the continuation of its prompt.

    ``lead`` is what precedes the answer after the prompt (a space after "Short answer:"). Spans whose end
    does not fall on a token boundary are not scored (they are not what the model would write)."""
    out: list[list[Span]] = []
    for i in range(0, len(prompts), batch_size):
        out += _score_batch(lm, prompts[i:i + batch_size], generations[i:i + batch_size], lead, max_words)
    return out


@torch.no_grad()
def _score_batch(lm, prompts, generations, lead, max_words) -> list[list[Span]]:
    tok, model, dev = lm.tokenizer, lm.model, lm.device
    stop = _stop_ids(tok).to(dev)
    rows = []          # (question index, start char, token ids, token end offsets, [(end word char, j)])
    for q, g in enumerate(generations):
        ws = words(g)
        for i, ends in starts(g, max_words):
            s = ws[i][0]
            last = ws[ends[-1]][1]
            ids, offs = _continuation(tok, g[s:last], lead)
            if ids:
                rows.append((q, s, ids, offs, [ws[j][1] - s for j in ends]))
    result: list[list[Span]] = [[] for _ in generations]
    if not rows:
        return result
    enc = [tok(p, add_special_tokens=False).input_ids for p in prompts]
    width = max(len(e) for e in enc)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = torch.full((len(enc), width), pad, dtype=torch.long)
    mask = torch.zeros((len(enc), width), dtype=torch.long)
    for b, e in enumerate(enc):                       # left padding: every prompt ends at the same column
        ids[b, width - len(e):] = torch.tensor(e)
        mask[b, width - len(e):] = 1
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    ids, mask, pos = ids.to(dev), mask.to(dev), pos.to(dev)
    first = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
    first_lp = torch.log_softmax(first.logits[:, -1].float(), -1)
    cache = first.past_key_values
    qi = torch.tensor([r[0] for r in rows], device=dev)
    cache.reorder_cache(qi)                           # each continuation row reads its own prompt's cache
    length = max(len(r[2]) for r in rows)
    cids = torch.full((len(rows), length), pad, dtype=torch.long)
    for r, row in enumerate(rows):
        cids[r, :len(row[2])] = torch.tensor(row[2])
    cids = cids.to(dev)
    cmask = torch.cat([mask[qi], torch.ones((len(rows), length), dtype=torch.long, device=dev)], 1)
    cpos = mask.sum(1)[qi, None] + torch.arange(length, device=dev)[None]
    logits = model(input_ids=cids, attention_mask=cmask, position_ids=cpos, cache=cache).logits
    lp = torch.log_softmax(logits.float(), -1)
    for r, (q, s, tids, offs, ends) in enumerate(rows):
        n = len(tids)
        tok_lp = [float(first_lp[q, tids[0]])] + [float(lp[r, t - 1, tids[t]]) for t in range(1, n)]
        stop_lp = torch.logsumexp(lp[r, :n][:, stop], -1).tolist()
        cum = 0.0
        at_end = {}
        for t in range(n):
            cum += tok_lp[t]
            at_end[offs[t]] = (t, cum)
        for e in ends:
            if e in at_end:
                t, c = at_end[e]
                result[q].append(Span(s, s + e, generations[q][s:s + e], c + stop_lp[t], t + 2, tok_lp[0],
                                     stop_lp[t]))
    return result


def softmax_mass(spans: list[Span]) -> list[float]:
    """Each span's share of the probability of all candidates (by total log-likelihood, not normalised)."""
    if not spans:
        return []
    top = max(s.logprob for s in spans)
    w = [math.exp(s.logprob - top) for s in spans]
    z = sum(w)
    return [x / z for x in w]
