"""Turn a document into training samples: the passage itself plus question-shaped samples.

PRAG's lesson, measured again on the 135M model (docs/design.md): training on the passage alone teaches the model
to recite it, not to answer from it. So each sentence of the passage gets a question written by the base LLM
(few-shot, all sentences of a batch in one batched generation) and the sample teaches "that question → that
sentence". The answer is the document's own sentence, so a poor question costs little and an answer is never
invented. A question the model botches is replaced by a cloze prompt built from the sentence itself.
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


def build_samples(lm: LoadedModel, texts: list[str], s: AugmentSettings) -> list[list[Sample]]:
    """Training samples for each text: the passage, then question → sentence pairs for each sentence."""
    eos = prompts.answer_suffix(lm.tokenizer)
    per_doc = [sentences(t, s.max_sentences) for t in texts]
    flat = [(" ".join(t.split()), x) for t, doc in zip(texts, per_doc) for x in doc]
    questions = write_questions(lm, flat, s) if s.questions else [[_cloze(x)] for _, x in flat]
    out, pos = [], 0
    for text, doc in zip(texts, per_doc):
        samples = [Sample("", " ".join(text.split()) + eos)]
        for sent in doc:
            samples += [Sample(prompts.question_prompt(lm.tokenizer, q), sent + eos) for q in questions[pos]]
            pos += 1
        out.append(samples)
    return out
