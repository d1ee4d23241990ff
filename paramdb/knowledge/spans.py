"""Constrained span selection: every word-boundary span of a generation, scored by the base model.

The short answer may only be a span of the generation, so instead of letting the model write freely and
checking its copy afterwards, every candidate span is scored as the answer: its tokens' log-likelihood after
the prompt (generation, question, "Short answer:"), plus the likelihood of stopping right after it (a newline
or end of text), divided by its token count plus one. The question's own words add answer-type cues
(:mod:`paramdb.knowledge.cues`), and a margin decides whether any span is trusted at all.

Cost: one batched forward pass over the prompts' shared prefix (the instruction and the generation), whose
key/value cache is copied for each suffix (the question, or none for the span's prior) in a second pass. A third
pass reads one short continuation per start word (the generation's words from there on, at most ``max_words`` of
them), all of a prompt's continuations packed end to end in that prompt's one row: an attention mask lets each
see the prompt's cache and its own earlier tokens only, so the cache is not copied per start and no row is padded
to the longest continuation, and the output layer reads only the positions that hold a token. Every span ending
inside a start's continuation is scored from that one stretch, so n words cost n short stretches, not n²
candidates.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import math
import re
from dataclasses import dataclass

import torch

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


# Words whose period abbreviates them: it ends no clause ("St. Louis", "Martin Luther King Jr.").
ABBREVIATIONS = frozenset("mr mrs ms dr st jr sr mt ft vs".split())


def _abbreviated(word: str) -> bool:
    """True for a word that a period after it abbreviates: an initial ("C" of "John C. Calhoun"), a word with
    dots inside ("F.C", "U.S"; edge punctuation is already trimmed) or a title such as "St"."""
    return (len(word) == 1 and word.isupper()) or "." in word or word.lower() in ABBREVIATIONS


def _clause_break(generation: str, a: tuple[int, int], b: tuple[int, int]) -> bool:
    """True where a clause ends between word ``a`` and the next word ``b`` (punctuation or a newline): a span
    holds one phrase ("Dimwam", not "Dimwam, a small town"), but a name keeps its initials ("John C. Calhoun")."""
    gap = generation[a[1]:b[0]]
    if gap.strip() == "." and _abbreviated(generation[a[0]:a[1]]):
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
                lead: str = " ", max_words: int = MAX_SPAN_WORDS, batch_size: int = 8) -> list[list[list[Span]]]:
    """Every candidate span of each generation, scored as the continuation of each of its prompts.

    Generation j's prompts are ``prefixes[j] + suffix`` for each suffix in ``suffixes[j]`` (every list the same
    length): the prefix is read once and its key/value cache shared by the suffixes (the question, and the
    prompt without it for the prior). Returns ``out[j][v]``, the spans under generation j's v-th prompt.
    ``lead`` is what precedes the answer after the prompt (a space after "Short answer:"). Spans whose end
    does not fall on a token boundary are not scored (they are not what the model would write)."""
    out: list[list[list[Span]]] = []
    for i in range(0, len(prefixes), batch_size):
        sl = slice(i, i + batch_size)
        out += _score_batch(lm, prefixes[sl], suffixes[sl], generations[sl], lead, max_words)
    return out


def _left_padded(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids and mask, padded on the left so that every sequence ends at the last column."""
    width = max(len(e) for e in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for b, e in enumerate(seqs):
        if e:
            ids[b, width - len(e):] = torch.tensor(e)
            mask[b, width - len(e):] = 1
    return ids, mask


@functools.lru_cache(maxsize=None)
def _cache_name(model_type: type) -> str:
    """The keyword a model class's forward takes its key/value cache by: ``cache`` since transformers 5,
    ``past_key_values`` before (the old name still works in 5 but warns once per process)."""
    return "cache" if "cache" in inspect.signature(model_type.forward).parameters else "past_key_values"


def _with_cache(model, cache) -> dict:
    """The key/value cache as ``model``'s forward takes it (read off its class once, not per forward)."""
    return {_cache_name(type(model)): cache}


def _cache_of(output):
    """The key/value cache a forward returned, under either name (see :func:`_with_cache`)."""
    return output["cache"] if "cache" in output else output["past_key_values"]


@torch.no_grad()
def _score_batch(lm, prefixes, suffixes, generations, lead, max_words) -> list[list[list[Span]]]:
    tok, model, dev = lm.tokenizer, lm.model, lm.device
    n_suffix = len(suffixes[0])
    result: list[list[list[Span]]] = [[[] for _ in range(n_suffix)] for _ in generations]
    conts = []         # per generation: (its index, start char, token ids, token end offsets, [end char of each span])
    for q, g in enumerate(generations):
        ws = words(g)
        conts.append([])
        for i, ends in starts(g, max_words):
            s = ws[i][0]
            ids, offs = _continuation(tok, g[s:ws[ends[-1]][1]], lead)
            if ids:
                conts[q].append((q, s, ids, offs, [ws[j][1] - s for j in ends]))
    if not any(conts):
        return result
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    # 1. the shared prefixes; only their cache is kept, so the decoder runs without the output layer
    # (``logits_to_keep=1`` would skip it as well, but measured twice as slow on a CPU build)
    ids, mask = _left_padded([tok(p, add_special_tokens=False).input_ids for p in prefixes], pad)
    ids, mask = ids.to(dev), mask.to(dev)
    cache = _cache_of(model.get_decoder()(input_ids=ids, attention_mask=mask,
                                          position_ids=(mask.cumsum(1) - 1).clamp(min=0), use_cache=True))
    # 2. each prefix's suffixes, on copies of its cache; the last position's distribution is the first token's
    owner = torch.tensor([q for q in range(len(prefixes)) for _ in range(n_suffix)], device=dev)
    sids, smask = _left_padded([tok(x, add_special_tokens=False).input_ids for xs in suffixes for x in xs], pad)
    sids, smask = sids.to(dev), smask.to(dev)
    cache.reorder_cache(owner)
    mask = torch.cat([mask[owner], smask], 1)
    pos = mask.sum(1, keepdim=True) - smask.sum(1, keepdim=True) + (smask.cumsum(1) - 1).clamp(min=0)
    first = model(input_ids=sids, attention_mask=mask, position_ids=pos, use_cache=True, **_with_cache(model, cache))
    first_lp = torch.log_softmax(first.logits[:, -1].float(), -1)
    cache = _cache_of(first)
    # 3. every start word's continuation under a prompt, packed into that prompt's one row: each continuation
    # attends to the prompt's cache and to its own earlier tokens only (_packed), so no cache is copied per start
    packed = [conts[p // n_suffix] for p in range(len(owner))]
    cids, after, seg, offset = _packed([[c[2] for c in row] for row in packed], pad)
    read = seg >= 0
    cmask = _segment_mask(mask, seg, model.dtype).to(dev)
    cpos = mask.sum(1, keepdim=True) + offset.to(dev)
    with _logits_only_at(model, read.to(dev)):
        logits = model(input_ids=cids.to(dev), attention_mask=cmask, position_ids=cpos,
                       **_with_cache(model, cache)).logits
    logits = logits.reshape(-1, logits.shape[-1]).float()            # one row per read position, in row order
    norm = torch.logsumexp(logits, -1)
    next_lp = (logits.gather(1, after[read].to(dev)[:, None])[:, 0] - norm).tolist()
    stop_lp = (torch.logsumexp(logits[:, _stop_ids(tok).to(dev)], -1) - norm).tolist()
    at = 0
    for prompt, row in enumerate(packed):
        for q, s, tids, offs, ends in row:
            n = len(tids)
            tok_lp = [float(first_lp[prompt, tids[0]])] + next_lp[at:at + n - 1]
            row_stop = stop_lp[at:at + n]
            at += n
            cum = 0.0
            at_end = {}
            for t in range(n):
                cum += tok_lp[t]
                at_end[offs[t]] = (t, cum)
            for e in ends:
                if e in at_end:
                    t, c = at_end[e]
                    result[q][prompt % n_suffix].append(
                        Span(s, s + e, generations[q][s:s + e], c + row_stop[t], t + 2, tok_lp[0], row_stop[t]))
    return result


def _packed(rows: list[list[list[int]]], pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each row's sequences laid end to end, rows padded on the right to one width: the ids, the id each
    position must predict (the next one of its sequence; ``pad`` at a sequence's end), each position's sequence
    index (-1 for padding) and its offset within its sequence (its position after the prompt)."""
    width = max(sum(map(len, r)) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    after = torch.full((len(rows), width), pad, dtype=torch.long)
    seg = torch.full((len(rows), width), -1, dtype=torch.long)
    offset = torch.zeros((len(rows), width), dtype=torch.long)
    for r, seqs in enumerate(rows):
        at = 0
        for i, e in enumerate(seqs):
            n = len(e)
            ids[r, at:at + n] = torch.tensor(e)
            after[r, at:at + n - 1] = ids[r, at + 1:at + n]
            seg[r, at:at + n] = i
            offset[r, at:at + n] = torch.arange(n)
            at += n
    return ids, after, seg, offset


def _segment_mask(prompt_mask: torch.Tensor, seg: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The additive 4D attention mask (rows, 1, queries, cache + queries) of packed rows: a position sees its
    prompt's unpadded cache and the earlier positions of its own sequence; padding sees the cache only."""
    n = seg.shape[1]
    causal = torch.ones((n, n), dtype=torch.bool).tril()
    own = (seg[:, :, None] == seg[:, None, :]) & causal & (seg[:, :, None] >= 0)
    seen = torch.cat([prompt_mask.bool().cpu()[:, None, :].expand(-1, n, -1), own], 2)
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
