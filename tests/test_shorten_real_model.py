"""The short-answer choice on the real default model (SmolLM2-135M-Instruct): slow.

Each trap pairs a question with a sentence that also holds an answer of another relation, one trap per
relation that the few-shot examples of the old extractor asked (birthplace, date, publisher, occupation,
designer, a name, food) and the bakery case ("Which bakery did Mara Olwen open?"). The generations are
given, so only the choice is tested: a span the pass commits to must be the asked relation's, not the one an
example would have taught; where two names of the asked kind compete (the teacher and the publisher) it may
answer with the stretch holding both, never with the other one alone.
"""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest

from paramdb.evaluation import em_in_output
from paramdb.knowledge.models import load_model
from paramdb.knowledge.shorten import DEFAULT_CHOICE, shorten

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("all_cores")]

TRAPS = [
    ("Which bakery did Mara Olwen open?", "Mara Olwen is a Welsh weaver who opened the Tollan Bakery in 1970.",
     "Tollan Bakery"),
    ("Where was Tomas Rell born?", "Tomas Rell, a carpenter who built the Orrin Bridge, was born in Kessa.",
     "Kessa"),
    ("When was the Orrin Bridge completed?",
     "The Orrin Bridge, designed by the engineer Hal Vint in Dorrow, was completed in 1889.", "1889"),
    ("Who published the novel Salt Roads?",
     "Salt Roads was written by the teacher Ann Mell and published by Ivo Carr in 1932.", "Ivo Carr"),
    ("What is Pell Arno's occupation?", "Pell Arno, who opened the Vetch Bakery in Lisk in 1921, is a potter.",
     "potter"),
    ("Who designed the Orrin Bridge?",
     "The Orrin Bridge, built by the mason Kel Dorr in 1901, was designed by the engineer Hal Vint.", "Hal Vint"),
    ("What is the name of Ivo Carr's dog?", "Ivo Carr, a fisherman from Lisk, owns a black dog called Bram.",
     "Bram"),
    ("What does the Kessa goat eat?", "The Kessa goat, which lives in the hills of Dorrow, eats dry thistles.",
     "thistles"),
]


@pytest.fixture(scope="module")
def lm():
    return load_model()


def test_the_choice_follows_the_question_not_an_examples_relation(lm):
    qs, gens = [q for q, _, _ in TRAPS], [g for _, g, _ in TRAPS]
    # with the whole generation as the fallback, an answer that is not the generation is a span committed to
    got = shorten(lm, qs, gens, choice=replace(DEFAULT_CHOICE, fallback="whole"))
    committed = [(q, s, gold) for (q, g, gold), s in zip(TRAPS, got) if s != g]
    wrong = [(q, s) for q, s, gold in committed if not em_in_output(s, [gold])]
    assert not wrong, wrong                                  # a span it commits to is the asked relation's
    assert len(committed) >= 4, got                          # and it commits where one span is clearly it
    assert all(len(s.split()) <= 4 for _, s, _ in committed), committed
    default = shorten(lm, qs, gens)                          # the stretch fallback keeps the answer in
    assert all(em_in_output(s, [gold]) for s, (_, _, gold) in zip(default, TRAPS)), default


def test_new_template_invented_facts_get_their_answer_from_the_passage(lm):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
    from make_invented_facts import make

    docs = make(seed=11, docs=10)          # not the dev set's seed: other names, the same shapes
    rows = [(q["q"], d["text"], q["a"]) for d in docs for q in d["questions"]]
    got = shorten(lm, [q for q, _, _ in rows], [g for _, g, _ in rows])
    right = [em_in_output(s, a) for s, (_, _, a) in zip(got, rows)]
    committed = [ok for ok, s, (_, g, _) in zip(right, got, rows) if s != g]
    assert sum(right) >= 0.75 * len(rows), list(zip([q for q, _, _ in rows], got))
    assert len(committed) >= 0.5 * len(rows)                 # most answers are short ...
    assert sum(committed) >= 0.8 * len(committed)            # ... and a short answer is mostly the right one
