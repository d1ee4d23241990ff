"""Constrained span selection: every word-boundary span of a generation, scored by the base model.

The short answer may only be a span of the generation, so instead of letting the model write freely and
checking its copy afterwards, every candidate span is scored as the answer: its tokens' log-likelihood after
the prompt (generation, question, "Short answer:"), plus the likelihood of stopping right after it (a newline
or end of text), divided by its token count plus one. The question's own words add answer-type cues
(:mod:`paramdb.knowledge.cues`), and a margin decides whether any span is trusted at all.

Cost: one forward pass per batch, over one row per generation. The row holds the prompts' shared prefix (the
instruction and the generation), each suffix (the question, or none for the span's prior) and, for every start
word and every suffix, one short continuation (the generation's words from there on, at most ``max_words`` of
them), laid end to end. An attention mask lets each suffix see the prefix and itself, and each continuation the
prefix, its suffix and its own earlier tokens, so nothing is read twice and no key/value cache is copied; the
output layer reads only the positions whose next token is scored. Every span ending inside a start's
continuation is scored from that one stretch, so n words cost n short stretches, not n² candidates. On a CPU a
forward pass of the 135M default costs ~40 ms however few its tokens (its weights are read from memory once per
pass) and ~1 ms per token beyond that, so the cost is one call plus the tokens of the row.
"""
from __future__ import annotations

import contextlib
import math
import re
from dataclasses import dataclass

import torch

from .abbreviations import ends_with_abbreviation
from .generate import _newline_ids
from .models import LoadedModel

MAX_SPAN_WORDS = 6
MAX_CONTINUATION_TOKENS = 48    # a start's continuation is cut to this; spans ending past it are not scored
# A span never starts or ends with one of these (no answer is "of Paris", "between A and B" or "Paris was"). A
# span may start with an article, which scoring ignores (SQuAD normalisation drops it), but never end with one.
FUNCTION_WORDS = frozenset("""a an the of in on at by to for from with and or but was were is are be been has had
have who whom whose which that this these those it its he she his her they their them as into than then also
where when while after before during until since between among across through about over under around
against along within without upon toward towards beside beyond behind below above beneath via onto near""".split())
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
    holds one phrase ("Dimwam", not "Dimwam, a small town"), but a name keeps its initials ("John C. Calhoun")."""
    gap = generation[a[1]:b[0]]
    if gap.strip() == "." and ends_with_abbreviation(generation[max(0, a[0] - 1):a[1]] + "."):
        return False
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


def score_spans(lm: LoadedModel, prefixes: list[str], suffixes: list[list[str]], generations: list[str],
                lead: str = " ", max_words: int = MAX_SPAN_WORDS, batch_size: int = 8,
                candidates: list[list[tuple[int, list[int]]]] | None = None) -> list[list[list[Span]]]:
    """Every candidate span of each generation, scored as the continuation of each of its prompts.

    Generation j's prompts are ``prefixes[j] + suffix`` for each suffix in ``suffixes[j]`` (every list the same
    length): the prefix is read once and seen by every suffix (the question, and the prompt without it for the
    prior). Returns ``out[j][v]``, the spans under generation j's v-th prompt. ``lead`` is what precedes the
    answer after the prompt (a space after "Short answer:"). ``candidates[j]``: the spans to score, as
    :func:`starts` gives them (the default); a caller that will discard some spans passes fewer, so that they
    cost nothing. Spans whose end does not fall on a token boundary are not scored (they are not what the model
    would write)."""
    candidates = candidates if candidates is not None else [starts(g, max_words) for g in generations]
    out: list[list[list[Span]]] = []
    for i in range(0, len(prefixes), batch_size):
        sl = slice(i, i + batch_size)
        out += _score_batch(lm, prefixes[sl], suffixes[sl], generations[sl], candidates[sl], lead)
    return out


@dataclass
class _Row:
    """One generation's prompts and continuations laid end to end: ids, each position's sequence (0 the prefix,
    1 + v suffix v, then the continuations), the suffix it answers (``under``) and its position id."""

    ids: list[int]
    seg: list[int]
    under: list[int]
    pos: list[int]

    def add(self, ids: list[int], under: int, start: int) -> int:
        """Append one sequence that sees the prefix and sequence ``under``; returns its first column."""
        at, seg = len(self.ids), (self.seg[-1] + 1 if self.seg else 0)
        self.ids += ids
        self.seg += [seg] * len(ids)
        self.under += [under] * len(ids)
        self.pos += list(range(start, start + len(ids)))
        return at


@torch.no_grad()
def _score_batch(lm, prefixes, suffixes, generations, candidates, lead) -> list[list[list[Span]]]:
    tok, model, dev = lm.tokenizer, lm.model, lm.device
    n_suffix = len(suffixes[0])
    result: list[list[list[Span]]] = [[[] for _ in range(n_suffix)] for _ in generations]
    rows, conts = [], []    # conts: (generation, prompt, start char, ids, end offsets, span ends, row, first column)
    asked_at = []           # per generation, per prompt: the column of the suffix's last token (the first answer token's)
    for q, g in enumerate(generations):
        ws = words(g)
        row = _Row([], [], [], [])
        p = tok(prefixes[q], add_special_tokens=False).input_ids
        row.add(p, 0, 0)
        ends_at = []
        for v, x in enumerate(suffixes[q]):
            ids = tok(x, add_special_tokens=False).input_ids
            at = row.add(ids, 1 + v, len(p))
            ends_at.append((at + len(ids) - 1, len(p) + len(ids)))
        asked_at.append([col for col, _ in ends_at])
        for i, ends in candidates[q]:
            s = ws[i][0]
            ids, offs = _continuation(tok, g[s:ws[ends[-1]][1]], lead)
            if ids:
                for v, (_, start) in enumerate(ends_at):
                    at = row.add(ids, 1 + v, start)
                    conts.append((q, v, s, ids, offs, [ws[j][1] - s for j in ends], len(rows), at))
        rows.append(row)
    if not conts:
        return result
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    width = max(len(r.ids) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    seg = torch.full((len(rows), width), -1, dtype=torch.long)
    under = torch.zeros((len(rows), width), dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    for b, r in enumerate(rows):
        n = len(r.ids)
        ids[b, :n], seg[b, :n], under[b, :n], pos[b, :n] = (torch.tensor(x) for x in (r.ids, r.seg, r.under, r.pos))
    # the output layer reads the suffixes' last positions and every continuation position
    read = torch.zeros((len(rows), width), dtype=torch.bool)
    for b, cols in enumerate(asked_at):
        read[b, cols] = True
    for _, _, _, t, _, _, b, at in conts:
        read[b, at:at + len(t)] = True
    index = (read.flatten().cumsum(0) - 1).reshape(read.shape)       # (row, column) -> its logits row
    with _logits_only_at(model, read.to(dev)):
        logits = model(input_ids=ids.to(dev), attention_mask=_visibility(seg, under, model.dtype).to(dev),
                       position_ids=pos.to(dev)).logits
    logits = logits.reshape(-1, logits.shape[-1]).float()
    norm = torch.logsumexp(logits, -1)
    stop_lp = (torch.logsumexp(logits[:, _stop_ids(tok).to(dev)], -1) - norm).tolist()
    # each token's log-probability is read where the position before it predicts it
    at_row, of_id = [], []
    for q, v, _, t, _, _, b, at in conts:
        at_row += [int(index[b, asked_at[q][v]])] + index[b, at:at + len(t) - 1].tolist()
        of_id += t
    rows_t = torch.tensor(at_row, device=dev)
    tok_lp = (logits[rows_t, torch.tensor(of_id, device=dev)] - norm[rows_t]).tolist()
    k = 0
    for q, v, s, t, offs, ends, b, at in conts:
        n = len(t)
        lps, stops = tok_lp[k:k + n], [stop_lp[i] for i in index[b, at:at + n].tolist()]
        k += n
        cum, at_end = 0.0, {}
        for i in range(n):
            cum += lps[i]
            at_end[offs[i]] = (i, cum)
        for e in ends:
            if e in at_end:
                i, c = at_end[e]
                result[q][v].append(Span(s, s + e, generations[q][s:s + e], c + stops[i], i + 2, lps[0], stops[i]))
    return result


def _visibility(seg: torch.Tensor, under: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The additive 4D attention mask (rows, 1, width, width) of the packed rows: a position sees the earlier
    positions of its own sequence, of the prefix (sequence 0) and of the suffix it answers; a suffix answers
    itself, so it sees the prefix and its own tokens only. Padding (sequence -1) sees no real position."""
    n = seg.shape[1]
    causal = torch.ones((n, n), dtype=torch.bool).tril()
    key = seg[:, None, :]
    seen = causal & (seg[:, :, None] >= 0) & ((key == seg[:, :, None]) | (key == 0) | (key == under[:, :, None]))
    seen |= torch.eye(n, dtype=torch.bool)              # every row attends somewhere (padding: itself)
    out = torch.zeros(seen.shape, dtype=dtype)
    return out.masked_fill_(~seen, torch.finfo(dtype).min)[:, None]


@contextlib.contextmanager
def _logits_only_at(model, read: torch.Tensor):
    """Within the block, ``model``'s output layer reads only the positions where ``read`` is True (flattened to
    one sequence): the padding at the end of the packed rows gets no logits. Done in the
    model's own forward, so whatever it does to its logits (softcapping, scaling) is still done."""
    head = model.get_output_embeddings()
    handle = head.register_forward_pre_hook(lambda _module, args: (args[0][read][None], *args[1:]))
    try:
        yield
    finally:
        handle.remove()


def softmax_mass(spans: list[Span]) -> list[float]:
    """Each span's share of the probability of all candidates (by total log-likelihood, not normalised)."""
    if not spans:
        return []
    top = max(s.logprob for s in spans)
    w = [math.exp(s.logprob - top) for s in spans]
    z = sum(w)
    return [x / z for x in w]
