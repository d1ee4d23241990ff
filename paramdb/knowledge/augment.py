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
from . import prompts
from .generate import greedy
from .models import LoadedModel
from .settings import AugmentSettings
from .train import Sample

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def sentences(text: str, limit: int) -> list[str]:
    parts = [s.strip() for s in _SENTENCE_END.split(" ".join(text.split())) if len(s.strip()) > 3]
    return parts[:limit]


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
    jobs = [(t.format(passage=p, sentence=x), j) for t in templates for j, (p, x) in enumerate(pairs)]
    out: list[list[str]] = [[] for _ in pairs]
    for i in range(0, len(jobs), s.batch_size):
        chunk = jobs[i:i + s.batch_size]
        for q, (_, j) in zip(greedy(lm, [prompt for prompt, _ in chunk], s.max_question_tokens), chunk):
            q = q if _usable(q) else _cloze(pairs[j][1])
            if q not in out[j]:
                out[j].append(q)
    return out


def short_span(answer: str, sentence: str, question: str) -> str | None:
    """``answer`` as the sentence writes it, or None: not a span of the sentence, as long as the sentence
    (nothing short about it), or already in the question (the model echoed the subject)."""
    answer = answer.strip().strip(".,;:!?\"'").strip()
    if not answer or len(answer.split()) > 8 or len(answer) > 0.6 * len(sentence):
        return None
    if answer.lower() in question.lower():
        return None
    at = sentence.lower().find(answer.lower())
    return sentence[at:at + len(answer)] if at >= 0 else None


def write_questions_with_answers(lm: LoadedModel, sents: list[str], s: AugmentSettings
                                 ) -> list[tuple[str, str | None]]:
    """One (question, short answer span or None) per sentence, in batched generations."""
    jobs = [prompts.QUESTION_ANSWER_FEW_SHOT.format(sentence=x) for x in sents]
    out = []
    for i in range(0, len(jobs), s.batch_size):
        lines = greedy(lm, jobs[i:i + s.batch_size], s.max_question_tokens + 16)
        for line, sent in zip(lines, sents[i:i + s.batch_size]):
            q, _, a = line.partition("Answer:")
            q = q.strip()
            out.append((q, short_span(a, sent, q)) if _usable(q) else (_cloze(sent), None))
    return out


def build_samples(lm: LoadedModel, texts: list[str], s: AugmentSettings) -> list[list[Sample]]:
    """Training samples for each text: the passage, then question → sentence pairs for each sentence (and
    question → short answer, with ``short_answers``)."""
    eos = prompts.answer_suffix(lm.tokenizer)
    per_doc = [sentences(t, s.max_sentences) for t in texts]
    flat = [(" ".join(t.split()), x) for t, doc in zip(texts, per_doc) for x in doc]
    spans: list[str | None] = [None] * len(flat)
    if s.short_answers and s.questions:
        qa = write_questions_with_answers(lm, [x for _, x in flat], s)
        questions, spans = [[q] for q, _ in qa], [a for _, a in qa]
    else:
        questions = write_questions(lm, flat, s) if s.questions else [[_cloze(x)] for _, x in flat]
    out, pos = [], 0
    for text, doc in zip(texts, per_doc):
        samples = [Sample("", " ".join(text.split()) + eos)]
        for sent in doc:
            samples += [Sample(prompts.question_prompt(lm.tokenizer, q), sent + eos) for q in questions[pos]]
            if spans[pos]:
                samples.append(Sample(prompts.question_prompt(lm.tokenizer, questions[pos][0], short=True),
                                      spans[pos] + eos))
            pos += 1
        out.append(samples)
    return out
