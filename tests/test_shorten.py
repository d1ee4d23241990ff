"""Short answers copied out of the generation: Answer.text is a span of Answer.generation, or all of it."""
from __future__ import annotations

import pytest

from conftest import make_tiny_lm
from paramdb.errors import InvalidInput
from paramdb.knowledge import shorten as shorten_mod
from paramdb.knowledge.shorten import repeats_question, shorten, span_of

GEN = "Quillane invented a blue glass called Moonrind in 1987."


@pytest.mark.parametrize("line, want", [
    ("moonrind", "Moonrind"),                 # written as the generation writes it
    (" Moonrind.", "Moonrind"),
    ("1987", "1987"),
    ("red glass", None),                      # not in the generation: never an invented answer
    ("", None),
    ("a b c d e f g h i j k", None),          # more words than a short answer has
])
def test_span_of_keeps_only_a_short_span_of_the_generation(line, want):
    assert span_of(line, GEN) == want


def test_shorten_keeps_the_models_span_and_falls_back_to_the_whole_generation(tiny_lm, monkeypatch):
    seen = []
    monkeypatch.setattr(shorten_mod, "greedy", lambda lm, ps, n: seen.extend(ps) or ["moonrind", "Paris"])
    got = shorten(tiny_lm, ["What did Quillane invent?", "Where is it?"], [GEN, "It is in the glass works."])
    assert got == ["Moonrind", "It is in the glass works."]
    assert "Question: What did Quillane invent?\nSentence: " + GEN in seen[0]


def test_an_empty_generation_is_not_sent_to_the_model(tiny_lm, monkeypatch):
    monkeypatch.setattr(shorten_mod, "greedy", lambda lm, ps, n: ["x"] * len(ps))
    assert shorten(tiny_lm, ["Q?", "R?"], ["", GEN]) == ["", GEN]


def test_a_context_too_small_for_the_extraction_prompt_keeps_the_generation():
    lm = make_tiny_lm(context=128)          # the few-shot prompt alone is longer
    assert shorten(lm, ["What did Quillane invent?"], [GEN]) == [GEN]


def test_generate_answers_with_a_span_of_its_generation_or_all_of_it(db):
    db.insert([{"id": "d1", "text": GEN}])
    for mode in ("prag", "closed"):
        a = db.generate("What did Quillane invent?", k=1, mode=mode, max_new_tokens=8)
        assert a.generation and a.text in a.generation and "shorten" in a.timings


def test_generate_with_short_false_answers_with_the_whole_generation(db):
    db.insert([{"id": "d1", "text": GEN}])
    a = db.generate("What did Quillane invent?", k=1, max_new_tokens=8, short=False)
    assert a.text == a.generation and "shorten" not in a.timings


def test_short_must_be_a_bool(db):
    with pytest.raises(InvalidInput, match="short must be True or False"):
        db.generate("What did Quillane invent?", short="no")


@pytest.mark.parametrize("copy, question, want", [
    ("Fish", "What fish do fishermen catch?", True),        # only the question's own words: no answer
    ("the harbour", "Where is the harbour?", True),
    ("Moonrind", "What did Quillane invent?", False),
    ("tea", "Did she drink tea or coffee?", False),          # a choice question is answered by its own words
])
def test_repeats_question_spots_a_copy_of_the_question(copy, question, want):
    assert repeats_question(copy, question) is want


def test_shorten_keeps_the_generation_when_the_copy_repeats_the_question(tiny_lm, monkeypatch):
    gen = "Fishermen catch fish called silverfin."
    monkeypatch.setattr(shorten_mod, "greedy", lambda lm, ps, n: ["fish"])
    assert shorten(tiny_lm, ["What fish do fishermen catch?"], [gen]) == [gen]


def test_shorten_keeps_the_generation_when_the_copy_hit_the_token_limit(tiny_lm, monkeypatch):
    line = "Quillane invented a blue glass"                       # a span, but cut where the limit fell
    n = len(tiny_lm.tokenizer(line, add_special_tokens=False).input_ids)
    monkeypatch.setattr(shorten_mod, "MAX_SHORT_TOKENS", n + 1)
    monkeypatch.setattr(shorten_mod, "greedy", lambda lm, ps, k: [line])
    assert shorten(tiny_lm, ["What did Quillane invent?"], [GEN]) == [GEN]
    monkeypatch.setattr(shorten_mod, "MAX_SHORT_TOKENS", n + 2)   # room to spare: the line ended by itself
    assert shorten(tiny_lm, ["What did Quillane invent?"], [GEN]) == [line]
