"""Turn a document into training samples: the passage itself plus question-shaped samples.

PRAG's lesson, measured again on the 135M model (docs/design.md): training on the passage alone teaches the model
to recite it, not to answer from it. So each sentence of the passage gets a question written by the base LLM
(few-shot, all sentences of a batch in one batched generation) and the sample teaches "that question → that
sentence". The answer is the document's own sentence, so a poor question costs little and an answer is never
invented. A question the model botches is replaced by a cloze prompt built from the sentence itself.

With ``short_answers`` the LLM also copies the question's short answer out of the sentence (a name, a date, a
phrase); kept only if it really is a span of the sentence and not already in the question, it adds a second
sample "question -> that span", asked with the short-answer prompt that answering then uses.
"""
from __future__ import annotations

import re
from typing import Iterator

from . import budget, prompts
from .abbreviations import ends_with_abbreviation
from .generate import greedy
from .models import LoadedModel
from .settings import AugmentSettings
from .shorten import span_of
from .train import Sample

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


# A "sentence" longer than this (a text without full stops, a table, a hostile 1 MB line) is cut into pieces
# of at most this many words and characters, so each one fits a question prompt and a training sample.
PIECE_WORDS = 64
PIECE_CHARS = 512
# The passage and sentence shown in one question prompt take at most this many tokens even where the context
# holds more: a question needs the sentence and some context, and a prompt of thousands of tokens for each
# of a document's sentences would cost minutes (typical passages, ~250 tokens, are shown whole).
MAX_FILL_TOKENS = 1024


def sentences(text: str, limit: int) -> list[str]:
    """The first ``limit`` sentences (pieces of long ones) of ``text``; only as much of it as that takes is
    cut up."""
    out: list[str] = []
    for sentence in _split(" ".join(text.split())):
        for piece in _pieces(sentence.strip()):
            if len(piece) > 3:
                out.append(piece)
                if len(out) >= limit:
                    return out
    return out


def _split(text: str) -> Iterator[str]:
    """Sentences of whitespace-normalised ``text``, joined again where a split followed an abbreviation."""
    held: list[str] = []
    for part in _SENTENCE_END.split(text):
        held.append(part)
        # split at "Dr.", the adapter would learn "... founded by Dr." (about one PopQA or HotpotQA passage in
        # nine had such a cut)
        if not ends_with_abbreviation(part):
            yield " ".join(held)
            held = []
    if held:
        yield " ".join(held)


def _pieces(sentence: str) -> Iterator[str]:
    if len(sentence) <= PIECE_CHARS and sentence.count(" ") < PIECE_WORDS:
        yield sentence
        return
    piece: list[str] = []
    size = 0
    for word in sentence.split(" "):
        for part in (word[i:i + PIECE_CHARS] for i in range(0, len(word), PIECE_CHARS)):
            if piece and (len(piece) == PIECE_WORDS or size + 1 + len(part) > PIECE_CHARS):
                yield " ".join(piece)
                piece, size = [], -1
            piece.append(part)
            size += 1 + len(part)
    if piece:
        yield " ".join(piece)


def _usable(question: str) -> bool:
    return question.endswith("?") and 3 <= len(question.split()) <= 30


def _cloze(sentence: str) -> str:
    words = sentence.split()
    return "Complete the fact: " + " ".join(words[: max(2, len(words) // 2)]) + " ..."


def write_questions(lm: LoadedModel, pairs: list[tuple[str, str]], s: AugmentSettings) -> list[list[str]]:
    """Distinct questions per (passage, sentence), one per template used, all in batched generations.

    The default template shows the sentence alone; the second also shows the passage, so its question can
    name who a pronoun stands for. Unusable outputs fall back to a cloze prompt.
    """
    templates = prompts.QUESTION_TEMPLATES[:max(1, s.questions_per_sentence)]
    jobs = [(prompt, j) for t in templates for j, pair in enumerate(pairs)
            if (prompt := _fitted(lm, t, *pair, s.max_question_tokens)) is not None]
    out: list[list[str]] = [[] for _ in pairs]
    for i in range(0, len(jobs), s.batch_size):
        chunk = jobs[i:i + s.batch_size]
        for q, (_, j) in zip(greedy(lm, [prompt for prompt, _ in chunk], s.max_question_tokens), chunk):
            q = q if _usable(q) else _cloze(pairs[j][1])
            if q not in out[j]:
                out[j].append(q)
    for j, (_, sentence) in enumerate(pairs):
        if not out[j]:                 # the model's context cannot even hold the few-shot template
            out[j].append(_cloze(sentence))
    return out


def _fitted(lm: LoadedModel, template: str, passage: str, sentence: str, new_tokens: int) -> str | None:
    """``template`` filled with the passage and sentence cut so the prompt and its question fit the model's
    context; None when the template alone leaves no room."""
    tok = lm.tokenizer
    bare = len(tok(template.format(passage="", sentence=""), add_special_tokens=False).input_ids)
    room = min(budget.context_window(lm) - new_tokens - bare - 4,    # 4 spare: joined text may tokenize longer
               MAX_FILL_TOKENS)
    if room < 8:
        return None
    with_passage = "{passage}" in template
    lengths = [budget.count(tok, sentence, room)] + ([budget.count(tok, passage, room)] if with_passage else [])
    allowed = budget.share(lengths, room)
    sentence = budget.clip(tok, sentence, allowed[0])[0]
    passage = budget.clip(tok, passage, allowed[1])[0] if with_passage else ""
    return template.format(passage=passage, sentence=sentence)


def short_span(answer: str, sentence: str, question: str) -> str | None:
    """``answer`` as the sentence writes it, or None: not a span of the sentence, as long as the sentence
    (nothing short about it), or already in the question (the model echoed the subject)."""
    span = span_of(answer, sentence, max_words=8)
    if span is None or len(span) > 0.6 * len(sentence) or span.lower() in question.lower():
        return None
    return span


def write_questions_with_answers(lm: LoadedModel, sents: list[str], s: AugmentSettings
                                 ) -> list[tuple[str, str | None]]:
    """One (question, short answer span or None) per sentence, in batched generations."""
    new_tokens = s.max_question_tokens + 16            # the question and its answer on one line
    jobs = [(prompt, j) for j, x in enumerate(sents)
            if (prompt := _fitted(lm, prompts.QUESTION_ANSWER_FEW_SHOT, "", x, new_tokens)) is not None]
    out: list[tuple[str, str | None]] = [(_cloze(x), None) for x in sents]   # kept where the model fails
    for i in range(0, len(jobs), s.batch_size):
        chunk = jobs[i:i + s.batch_size]
        for line, (_, j) in zip(greedy(lm, [prompt for prompt, _ in chunk], new_tokens), chunk):
            q, _, a = line.partition("Answer:")
            q = q.strip()
            if _usable(q):
                out[j] = (q, short_span(a, sents[j], q))
    return out


def build_samples(lm: LoadedModel, texts: list[str], s: AugmentSettings) -> list[list[Sample]]:
    """Training samples for each text: the passage (unless ``passage_sample`` is off and the text has a
    sentence to ask about), then question → sentence pairs for each sentence (and question → short answer,
    with ``short_answers``)."""
    eos = prompts.answer_suffix(lm.tokenizer)
    per_doc = [sentences(t, s.max_sentences) for t in texts]
    flat = [(passage, x) for t, doc in zip(texts, per_doc) for passage in [" ".join(t.split())] for x in doc]
    spans: list[str | None] = [None] * len(flat)
    if s.short_answers and s.questions:
        qa = write_questions_with_answers(lm, [x for _, x in flat], s)
        questions, spans = [[q] for q, _ in qa], [a for _, a in qa]
    else:
        questions = write_questions(lm, flat, s) if s.questions else [[_cloze(x)] for _, x in flat]
    out, pos = [], 0
    for text, doc in zip(texts, per_doc):
        samples = [Sample("", " ".join(text.split()) + eos)] if s.passage_sample or not doc else []
        for sent in doc:
            samples += [Sample(prompts.question_prompt(lm.tokenizer, q), sent + eos) for q in questions[pos]]
            if spans[pos]:
                samples.append(Sample(prompts.question_prompt(lm.tokenizer, questions[pos][0], short=True),
                                      spans[pos] + eos))
            pos += 1
        out.append(samples)
    return out
