"""Documents → training samples: the passage, then question → sentence samples for each sentence."""
from __future__ import annotations

import dataclasses

import pytest

from paramdb.knowledge import augment, prompts
from paramdb.knowledge.augment import AugmentSettings, _cloze, build_samples, sentences, write_questions
from paramdb.knowledge.train import _encode

FAST = AugmentSettings(max_question_tokens=4)     # the tiny model writes garbage at any length


@pytest.mark.parametrize("text, want", [
    ("The sky is blue. Grass is green! Is water wet? Yes, it is.",
     ["The sky is blue.", "Grass is green!", "Is water wet?", "Yes, it is."]),
    ("First line.\n\n   Second\tline.", ["First line.", "Second line."]),           # whitespace collapsed
    ("It costs 3.5 dollars. then lowercase. 42 is the answer.",                     # no split before lowercase
     ["It costs 3.5 dollars. then lowercase.", "42 is the answer."]),
    ('He waved. "Bye," she said. (Quoted) too.', ["He waved.", '"Bye," she said.', "(Quoted) too."]),
    ("Ok. This sentence stays.", ["This sentence stays."]),                          # fragments of ≤3 chars dropped
    ("No final stop", ["No final stop"]),
    ("   ", []),
])
def test_sentences_splits_after_end_punctuation_before_a_capital_digit_quote_or_paren(text, want):
    assert sentences(text, limit=12) == want


@pytest.mark.parametrize("text, want", [
    ("It was founded by Dr. David Schoenstadt. It opened in 1989.",
     ["It was founded by Dr. David Schoenstadt.", "It opened in 1989."]),
    ("The third volume of J. R. R. Tolkien's novel. Published 1955.",
     ["The third volume of J. R. R. Tolkien's novel.", "Published 1955."]),
    ("She served in the U.S. Army. Later she moved to St. Louis.",
     ["She served in the U.S. Army.", "Later she moved to St. Louis."]),
    ("Written by P.L. Travers in Jan. 1934. It sold well.", ["Written by P.L. Travers in Jan. 1934.", "It sold well."]),
    ("The cast (incl. Mr. Bean) was small. Reviews were kind.",
     ["The cast (incl. Mr. Bean) was small.", "Reviews were kind."]),
    ("John Lanchester (b. 1962) is a novelist. He lives in London.",
     ["John Lanchester (b. 1962) is a novelist.", "He lives in London."]),
])
def test_sentences_do_not_end_at_a_title_an_initial_or_a_dotted_abbreviation(text, want):
    assert sentences(text, limit=12) == want


def test_a_text_of_initials_alone_is_one_sentence_cut_into_bounded_pieces():
    out = sentences("A. " * 200_000, limit=3)
    assert len(out) == 3 and all(len(p) <= augment.PIECE_CHARS for p in out)


def test_sentences_keeps_only_the_first_limit():
    assert sentences("One is here. Two is here. Three is here.", limit=2) == ["One is here.", "Two is here."]


def test_build_samples_gives_the_passage_then_one_question_sample_per_sentence(tiny_lm):
    texts = ["Zorbel is the capital.  It has nine bridges.", "Cats purr when content."]
    out = build_samples(tiny_lm, texts, FAST)
    assert [len(s) for s in out] == [3, 2]
    eos = tiny_lm.tokenizer.eos_token
    assert out[0][0].prompt == "" and out[0][0].target == "Zorbel is the capital. It has nine bridges." + eos
    assert [s.target for s in out[0][1:]] == ["Zorbel is the capital." + eos, "It has nine bridges." + eos]
    assert out[1][0].target == "Cats purr when content." + eos and out[1][1].target == "Cats purr when content." + eos
    assert all(s.prompt.startswith("Question: ") for doc in out for s in doc[1:])


def test_build_samples_respects_max_sentences(tiny_lm):
    text = "One is here. Two is here. Three is here."
    (samples,) = build_samples(tiny_lm, [text], AugmentSettings(questions=False, max_sentences=2))
    assert [s.target for s in samples[1:]] == ["One is here.[SEP]", "Two is here.[SEP]"]


def test_unusable_model_questions_fall_back_to_the_cloze_prompt(tiny_lm):
    sents = ["Zorbel is the capital of Freedonia.", "It has nine bridges."]
    passage = " ".join(sents)
    got = write_questions(tiny_lm, [(passage, s) for s in sents], FAST)
    assert got == [[_cloze(s)] for s in sents]     # no usable question from a random model; one cloze, deduplicated
    (samples,) = build_samples(tiny_lm, [passage], FAST)
    assert [s.prompt for s in samples[1:]] == [prompts.question_prompt(tiny_lm.tokenizer, _cloze(s)) for s in sents]
    assert _cloze(sents[0]) == "Complete the fact: Zorbel is the ..."


def test_usable_questions_are_kept_and_others_replaced_in_order_across_batches(tiny_lm, monkeypatch):
    sents = ["Alpha is first.", "Beta is second.", "Gamma is third.", "Delta is fourth.", "Epsilon is fifth."]
    raw = iter([["What is first?", "no question mark"], ["Who?", "Which letter is fourth?"], ["What is fifth?"]])
    calls = []

    def fake_greedy(lm, prompt_list, max_new_tokens):
        calls.append(len(prompt_list))
        return next(raw)
    monkeypatch.setattr(augment, "greedy", fake_greedy)
    got = write_questions(tiny_lm, [("A passage.", x) for x in sents],
                          AugmentSettings(batch_size=2, questions_per_sentence=1))
    assert calls == [2, 2, 1]
    assert got == [["What is first?"], [_cloze(sents[1])], [_cloze(sents[2])], ["Which letter is fourth?"],
                   ["What is fifth?"]]


def test_each_template_adds_its_question_and_repeats_are_dropped(tiny_lm, monkeypatch):
    def fake_greedy(lm, prompt_list, max_new_tokens):
        return ["Where is Alpha?" if "Passage:" in p else "What is Alpha?"
                for p in prompt_list]
    monkeypatch.setattr(augment, "greedy", fake_greedy)
    pairs = [("Alpha is here.", "Alpha is here.")]
    assert write_questions(tiny_lm, pairs, AugmentSettings(questions_per_sentence=2)) == [
        ["What is Alpha?", "Where is Alpha?"]]
    monkeypatch.setattr(augment, "greedy", lambda lm, ps, n: ["Where is Alpha?"] * len(ps))
    assert write_questions(tiny_lm, pairs, AugmentSettings(questions_per_sentence=2)) == [["Where is Alpha?"]]


def test_the_default_template_shows_the_sentence_and_the_second_also_its_own_passage(tiny_lm, monkeypatch):
    texts = ["Zorbel is the capital.  It has nine bridges.", "Cats purr when content."]
    seen = []

    def fake_greedy(lm, prompt_list, max_new_tokens):
        seen.extend(prompt_list)
        return ["" for _ in prompt_list]
    monkeypatch.setattr(augment, "greedy", fake_greedy)
    build_samples(tiny_lm, texts, AugmentSettings(max_question_tokens=4, questions_per_sentence=2))
    want = [("Zorbel is the capital. It has nine bridges.", "Zorbel is the capital."),
            ("Zorbel is the capital. It has nine bridges.", "It has nine bridges."),
            ("Cats purr when content.", "Cats purr when content.")]
    assert seen == ([prompts.QUESTION_FEW_SHOT_SENTENCE.format(sentence=x) for _, x in want] +
                    [prompts.QUESTION_FEW_SHOT.format(passage=p, sentence=x) for p, x in want])


def test_without_questions_the_model_is_not_asked(tiny_lm, monkeypatch):
    monkeypatch.setattr(augment, "greedy", lambda *a, **k: pytest.fail("greedy called"))
    (samples,) = build_samples(tiny_lm, ["Zorbel is the capital."], AugmentSettings(questions=False))
    assert samples[1].prompt == prompts.question_prompt(tiny_lm.tokenizer, _cloze("Zorbel is the capital."))


def test_every_sample_target_ends_with_the_tokenizers_eos_token(tiny_lm):
    tok = tiny_lm.tokenizer
    docs = build_samples(tiny_lm, ["Zorbel is the capital. It has nine bridges."], FAST)
    for ids, labels in _encode(tok, docs[0], max_length=384):
        assert ids[-1] == labels[-1] == tok.eos_token_id
    assert all(s.target.endswith(tok.eos_token) for s in docs[0])


def test_without_the_passage_sample_only_question_samples_remain(tiny_lm):
    texts = ["Zorbel is the capital.  It has nine bridges."]
    (samples,) = build_samples(tiny_lm, texts, dataclasses.replace(FAST, passage_sample=False))
    eos = tiny_lm.tokenizer.eos_token
    assert [s.target for s in samples] == ["Zorbel is the capital." + eos, "It has nine bridges." + eos]
    assert all(s.prompt for s in samples)
