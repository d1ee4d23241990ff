"""Short answers: the words of a generated answer that answer the question, copied out by the base model.

An adapter trained on "question -> the document's sentence" answers with that sentence: the fact is in it (EM
in output) but a user asking "Where was X born?" wants "Warsaw", and token F1 scores the sentence's other words
against the answer. Training on short targets instead (AugmentSettings.short_answers) measured worse on the
135M model: its own question-and-answer lines give a usable span for under half the sentences, and the adapter
then answers neither way well (docs/recipe.md). So the generation stays what the adapter learned, and a second,
short greedy pass of the base model (no adapter, no passages) reads the question and that generation and copies
the answer out. What it copies is kept only if it is a span of the generation: the short answer can lose words
but never invents one. Otherwise the whole generation is the answer.

Two more refusals, each a case where the copy measured worse than the whole generation (fictional facts,
docs/recipe.md): a copy that only repeats the question's own words ("Fish" for "What fish do fishermen
catch?"), unless the question offers a choice ("A or B?"), and a copy cut off by the extraction's token limit
("... by the merchant Hugo" for "Hugo Strand").
"""
from __future__ import annotations

import re

from . import budget, prompts
from .generate import greedy
from .models import LoadedModel

MAX_SHORT_TOKENS = 16
MAX_SHORT_WORDS = 10            # a longer "short answer" is no shorter than the sentence it came from
GENERATION_TOKENS = 128         # the generation shown to the extractor is cut to this (answers are ≤ 48 by default)


def span_of(candidate: str, generation: str, max_words: int = MAX_SHORT_WORDS) -> str | None:
    """``candidate`` (trimmed of spaces, quotes and end punctuation) as ``generation`` writes it, matched
    case-insensitively; None if it is empty, longer than ``max_words`` or not a span of ``generation``."""
    candidate = candidate.strip().strip(".,;:!?\"'").strip()
    if not candidate or len(candidate.split()) > max_words:
        return None
    at = generation.lower().find(candidate.lower())
    return generation[at:at + len(candidate)] if at >= 0 else None


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def repeats_question(candidate: str, question: str) -> bool:
    """True when every word of ``candidate`` is one of ``question``'s and the question offers no choice."""
    asked = _words(question)
    return "or" not in asked and all(w in asked for w in _words(candidate))


def shorten(lm: LoadedModel, questions: list[str], generations: list[str], batch_size: int = 8) -> list[str]:
    """The short answer of each (question, generation): a span of the generation, or the generation itself
    (also where the model's context cannot hold the extraction prompt)."""
    out = list(generations)
    room = budget.context_window(lm) - MAX_SHORT_TOKENS
    jobs = []
    for j, (q, g) in enumerate(zip(questions, generations)):
        shown = budget.clip(lm.tokenizer, " ".join(g.split()), GENERATION_TOKENS)[0]
        prompt = prompts.SHORTEN_FEW_SHOT.format(question=q, answer=shown)
        if shown and budget.count(lm.tokenizer, prompt, room + 1) <= room:
            jobs.append((j, prompt))
    for i in range(0, len(jobs), batch_size):
        chunk = jobs[i:i + batch_size]
        for (j, _), line in zip(chunk, greedy(lm, [p for _, p in chunk], MAX_SHORT_TOKENS)):
            if len(lm.tokenizer(line, add_special_tokens=False).input_ids) >= MAX_SHORT_TOKENS - 1:
                continue                        # greedy stops at the line's end: this one hit the token limit
            span = span_of(line, generations[j])
            if span and not repeats_question(span, questions[j]):
                out[j] = span
    return out
