"""Short answers: the span of a generated answer that answers the question, chosen by the base model.

An adapter trained on "question -> the document's sentence" answers with that sentence: the fact is in it (EM
in output) but a user asking "Where was X born?" wants "Warsaw", and token F1 scores the sentence's other words
against the answer. Training on short targets instead (AugmentSettings.short_answers) measured worse on the
135M model (docs/recipe.md), so the generation stays what the adapter learned and the short answer is chosen
out of it afterwards.

The choice cannot leave the generation: every word-boundary span of it is a candidate, scored by the base model
(no adapter, no passages) as the answer to the question (knowledge/spans.py: length-normalised likelihood, one
batched pass). No few-shot examples steer it: an earlier extractor that copied freely after seven examples
followed them, not the question ("weaver" for "Which bakery did Mara Olwen open?" because an example asked an
occupation). Two more kinds of rule:
- answer-type cues from the question's own words (knowledge/cues.py: "Which bakery" -> a name holding
  "Bakery", "When" -> a date, "Who" -> a name) add ``Choice.cue_bonus`` to the spans that fit, and take it
  from a date where the question asks none and from an aside in parentheses ("John Bell (12 May 1763 - ...)")
  unless the aside is of the kind asked (the date for "When was John Bell born?");
  a content word of the question next to the span adds ``Choice.near_bonus``;
- a span that only repeats the question's words ("Fish" for "What fish do fishermen catch?") or the
  exchange's own ("The answer") is no answer, unless the question offers a choice ("A or B?").
The best span is kept only if it beats every span that does not overlap it by ``Choice.margin``; otherwise no
single span is trusted and the answer is the shortest stretch of the generation holding the best span and its
close rivals ("Poldre Grirktho, whose pupil Lelmo Berdam" when both could have restored the painting): the
answer stays in, with less of the sentence around it than the whole generation. So ``Answer.text`` is always
a span of ``Answer.generation`` or all of it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from . import budget, cues, prompts, spans

GENERATION_TOKENS = 128         # the generation shown to the extractor is cut to this (answers are ≤ 48 by default)
SHORTEN_PROMPT = prompts.SHORTEN_PROMPT


@dataclass(frozen=True)
class Choice:
    """How a short answer is chosen from the scored spans (the defaults are the measured choice)."""

    cue_bonus: float = 1.0      # added to the score of a span that fits the question's answer type
    near_bonus: float = 0.6     # added where a content word of the question stands next to the span
    prior: float = 0.5          # weight of the span's score without the question, subtracted (PMI-like)
    margin: float = 0.8         # the best span must beat the best non-overlapping rival by this much
    fallback: str = "cover"     # "cover": the stretch of the generation holding the best span and its close
    #                             rivals; "whole": the generation; "clause": its first clause (PRAG's cut)


DEFAULT_CHOICE = Choice()


def span_of(candidate: str, generation: str, max_words: int = 10) -> str | None:
    """``candidate`` (trimmed of spaces, quotes and end punctuation) as ``generation`` writes it, matched
    case-insensitively; None if it is empty, longer than ``max_words`` or not a span of ``generation``
    (augment.py keeps a written short answer only if it is one)."""
    candidate = candidate.strip().strip(".,;:!?\"'").strip()
    if not candidate or len(candidate.split()) > max_words:
        return None
    at = generation.lower().find(candidate.lower())
    return generation[at:at + len(candidate)] if at >= 0 else None


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


# The exchange's own words: what the answering and extraction prompts call their parts. A span made only of
# them, function words and the question's words ("The answer to this question", "the context") restates the
# task, not an answer.
EXCHANGE_WORDS = frozenset(cues.stem(w) for w in "question answer sentence context passage text document this".split()) \
    | spans.FUNCTION_WORDS


def repeats_question(candidate: str, question: str) -> bool:
    """True when every word of ``candidate`` is one of ``question``'s (or of the exchange's own vocabulary)
    and the question offers no choice ("A or B?", where repeating one of its words is the answer)."""
    asked = _words(question)
    known = {cues.stem(w) for w in asked} | EXCHANGE_WORDS
    return "or" not in asked and all(cues.stem(w) in known for w in _words(candidate))


def answers(question: str, shown: str) -> list[tuple[int, list[int]]]:
    """The candidate spans of ``shown`` (as :func:`spans.starts` gives them) less those that only repeat the
    question, which :func:`choose` would discard: they are not scored at all."""
    ws = spans.words(shown)
    out = []
    for i, ends in spans.starts(shown):
        kept = [e for e in ends if not repeats_question(shown[ws[i][0]:ws[e][1]], question)]
        if kept:
            out.append((i, kept))
    return out


def first_clause(generation: str) -> str:
    """The generation up to its first ".", "," or newline (PRAG's scorer cuts predictions there)."""
    return re.split(r"[.,\n]", generation, maxsplit=1)[0].strip() or generation


def choose(question: str, generation: str, scored: list[spans.Span], choice: Choice = DEFAULT_CHOICE,
           unasked: list[spans.Span] | None = None) -> str:
    """The short answer from ``generation``'s scored spans: the best one if trusted, else the fallback.
    ``unasked``: the same spans scored without the question (needed where ``choice.prior`` is not 0)."""
    fallback = first_clause(generation) if choice.fallback == "clause" else generation
    prior = {(s.start, s.end): s.score for s in unasked or ()}
    kept = [s for s in scored if not repeats_question(s.text, question)]
    if not kept:
        return fallback
    kind = cues.kind_of(question)

    def worth(s: spans.Span) -> float:
        fit = cues.fits(kind, s.text)
        wrong = cues.off_kind(kind, s.text) or (not fit and cues.aside(generation, s.start, s.end))
        near = choice.near_bonus and cues.near_question(question, generation, s.start, s.end)
        return (s.score - choice.prior * prior.get((s.start, s.end), 0.0) + (choice.cue_bonus if fit else 0.0)
                - (choice.cue_bonus if wrong else 0.0) + (choice.near_bonus if near else 0.0))

    value = {s: worth(s) for s in kept}
    best = max(kept, key=lambda s: (value[s], -s.start, s.end - s.start))
    close = [s for s in kept if (s.end <= best.start or s.start >= best.end)
             and value[best] - value[s] < choice.margin]
    if not close:
        return best.text
    if choice.fallback != "cover":
        return fallback
    # Not sure which: the shortest stretch of the generation that holds the best span and every close rival
    start, end = min(s.start for s in close + [best]), max(s.end for s in close + [best])
    return generation[start:end]


_ASKED = "Question: {question}\n"


def prompt_parts(question: str | None, shown: str, template: str = SHORTEN_PROMPT) -> tuple[str, str]:
    """The scoring prompt as (prefix, suffix): the prefix is the template up to its question line (the
    instruction and, in the default template, the generation), shared by the prompts with and without the
    question; ``question`` None leaves the question line out (the span's prior, for ``Choice.prior``)."""
    at = template.index(_ASKED)
    head, tail = template[:at], template[at:]
    if question is None:
        return head.format(answer=shown), tail.replace(_ASKED, "").format(answer=shown)
    return head.format(answer=shown), tail.format(question=question, answer=shown)


def extraction_prompt(question: str | None, shown: str, template: str = SHORTEN_PROMPT) -> str:
    """The whole scoring prompt (prefix and suffix of :func:`prompt_parts`)."""
    return "".join(prompt_parts(question, shown, template))


def score(lm, questions: list[str], generations: list[str], batch_size: int = 8, template: str = SHORTEN_PROMPT,
          prior: bool = False) -> list[tuple[list[spans.Span], list[spans.Span] | None] | None]:
    """The scored spans of each generation: (with the question, without it where ``prior``), or None where the
    generation is empty or the prompt does not fit the model's context."""
    room = budget.context_window(lm) - spans.MAX_CONTINUATION_TOKENS
    jobs = []
    for j, (q, g) in enumerate(zip(questions, generations)):
        shown = budget.clip(lm.tokenizer, g, GENERATION_TOKENS)[0]
        prefix, asked = prompt_parts(q, shown, template)
        if shown.strip() and budget.count(lm.tokenizer, prefix + asked, room + 1) <= room:
            ends = [asked, prompt_parts(None, shown, template)[1]] if prior else [asked]
            jobs.append((j, prefix, ends, shown))
    out: list[tuple[list[spans.Span], list[spans.Span] | None] | None] = [None] * len(generations)
    found = spans.score_spans(lm, [p for _, p, _, _ in jobs], [e for _, _, e, _ in jobs],
                              [s for _, _, _, s in jobs], batch_size=batch_size,
                              candidates=[answers(questions[j], s) for j, _, _, s in jobs])
    for (j, _, _, _), got in zip(jobs, found):
        out[j] = (got[0], got[1] if prior else None)
    return out


def shorten(lm, questions: list[str], generations: list[str], batch_size: int = 8,
            choice: Choice = DEFAULT_CHOICE) -> list[str]:
    """The short answer of each (question, generation): a span of the generation, or the generation itself
    (where no span is trusted, the generation is empty, or the model's context cannot hold the prompt)."""
    scored = score(lm, questions, generations, batch_size, prior=bool(choice.prior))
    return [g if got is None else choose(q, g, got[0], choice, got[1])
            for q, g, got in zip(questions, generations, scored)]
