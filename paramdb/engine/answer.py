"""Answering a batch of questions: retrieve each one's documents, merge their adapters and/or put their
passages in the prompt (by mode), generate all answers in one batched greedy decode, and (``short``) copy
each answer's short answer out of its generation. Without adapters (closed, icl) a short answer is also asked
for in the prompt: the generation is then short already and the copy has little to lose. Every prompt fits
the model's context: an over-long question is refused, passages are cut and the answer's notes say so.

A pending hit (a row inserted with ``parameterize="later"``, no adapter yet) is never dropped: in prag and
combine mode its passage is put in the prompt (as icl would for that hit) and it is left out of the merge,
whose rank weights are then those of the adapters that remain; the answer's notes name it. Each question in a
batch may have its own mix of adapters and passages: one batched generation still answers them all.

A new mode is a new branch here (which of adapters and passages it uses) plus its name in config.MODES.
"""
from __future__ import annotations

import hashlib
import time

from ..knowledge import prompts
from ..knowledge.budget import context_window
from ..knowledge.generate import greedy
from ..knowledge.shorten import shorten
from ..options import AnswerOptions
from ..storage.meta import PENDING
from ..types import Answer
from . import adapters
from .models import Models
from .search import search
from .store import Store


def answer_batch(store: Store, models: Models, questions: list[str], opts: AnswerOptions) -> list[Answer]:
    """Answers in question order; the questions and options were checked by the caller (ParamDB)."""
    k, mode, where, method, short = opts.k, opts.mode, opts.where, opts.method, opts.short
    merge, weight, max_new_tokens = opts.merge, opts.weight, opts.max_new_tokens
    lm = models.lm
    context = context_window(lm)
    room = prompts.prompt_budget(lm.tokenizer, questions, context, max_new_tokens)
    t0 = time.perf_counter()
    found = [search(store, models, q, k, where, method) if mode != "closed" else [] for q in questions]
    hits = [[hit for hit, _ in f] for f in found]
    t1 = time.perf_counter()
    with_adapters = mode in ("prag", "combine")
    factors = adapters.merged(store, lm, [[key for h, key in f if h.adapter_kind != PENDING] for f in found],
                              merge, weight) if with_adapters else None
    t2 = time.perf_counter()
    short_prompt = asks_short(store.config, mode, short)
    fitted = [prompts.fitted_question_prompt(lm.tokenizer, q, _passages(mode, hs), room, context, short=short_prompt)
              for q, hs in zip(questions, hits)]
    texts = greedy(lm, [prompt for prompt, _ in fitted], max_new_tokens, factors=factors,
                   scale=1.0)    # merged factors carry the scale
    t3 = time.perf_counter()
    shorts = shorten(lm, questions, texts) if short else texts
    t4 = time.perf_counter()
    n = len(questions)
    timings = {"retrieve": (t1 - t0) / n, "load_adapters": (t2 - t1) / n, "generate": (t3 - t2) / n}
    if short:
        timings["shorten"] = (t4 - t3) / n
    return [Answer(text=s, mode=mode, hits=h, timings=dict(timings), generation=t,
                   notes=notes + (_unrefined(h) if factors is not None else []) +
                   (_pending(h) if with_adapters else []))
            for s, t, h, (_, notes) in zip(shorts, texts, hits, fitted)]


def _passages(mode: str, hits) -> list[str] | None:
    """The passages a question's prompt carries: every hit's in icl and combine; in prag, those of pending
    hits only (they have no adapter to speak for them), and none (the bare prag prompt) when there are none."""
    if mode in ("icl", "combine"):
        return [h.text for h in hits]
    if mode == "prag":
        return [h.text for h in hits if h.adapter_kind == PENDING] or None
    return None


def _pending(hits) -> list[str]:
    """A note when hits had no adapter yet: the answer read their passages instead (never silently lost)."""
    ids = [h.id for h in hits if h.adapter_kind == PENDING]
    return [f"answered from the passages of rows not yet parameterized ({', '.join(ids)}): they have no adapter "
            f"until `paramdb refine` trains them"] if ids else []


def _unrefined(hits) -> list[str]:
    """A note when translated adapters spoke: they carry a document's facts less exactly than trained ones
    (docs/translator.md), so the user learns which rows ``refine`` would make exact."""
    ids = [h.id for h in hits if h.adapter_kind == "translated"]
    return [f"answered with translated adapters not yet refined ({', '.join(ids)}); `paramdb refine` trains "
            f"them"] if ids else []


def asks_short(config, mode: str, short: bool) -> bool:
    """Whether a question in ``mode`` is asked for a short answer. prag and combine ask as the store's adapters
    were trained; closed and icl, which no adapter speaks in, ask for the short answer itself when one is wanted
    (docs/evaluation.md: what the span choice then loses)."""
    return config.augment.short_answers or (short and mode not in ("prag", "combine"))


def prompt_signature(config, mode: str, short: bool) -> str:
    """A digest of the words a question in ``mode`` is asked with (instructions with and without passages, the
    plain models' cue) and, with ``short``, of the short-answer pass's prompt. A record of answers keyed by it
    (``paramdb eval``'s predictions) asks again once those words change, instead of resuming from old ones."""
    s = asks_short(config, mode, short)
    words = [prompts.system_prompt(True, s), prompts.system_prompt(False, s), prompts.answer_cue(s)]
    if short:
        words.append(prompts.SHORTEN_PROMPT)
    return hashlib.sha256("\0".join(words).encode()).hexdigest()[:12]
