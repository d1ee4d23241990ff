"""Short answers chosen among the generation's spans: Answer.text is a span of Answer.generation, or all of it."""
from __future__ import annotations

import random

import pytest
import torch

from conftest import make_tiny_lm
from paramdb.errors import InvalidInput
from paramdb.knowledge import cues, spans
from paramdb.knowledge.shorten import (Choice, choose, extraction_prompt, first_clause, prompt_parts, repeats_question,
                                       score, shorten, span_of)

GEN = "Quillane invented a blue glass called Moonrind in 1987."
TRAP = "Mara Olwen is a Welsh weaver who opened the Tollan Bakery in 1970."


@pytest.mark.parametrize("line, want", [
    ("moonrind", "Moonrind"),                 # written as the generation writes it
    (" Moonrind.", "Moonrind"),
    ("red glass", None),                      # not in the generation: never an invented answer
    ("", None),
    ("a b c d e f g h i j k", None),          # more words than a short answer has
])
def test_span_of_keeps_only_a_short_span_of_the_generation(line, want):
    assert span_of(line, GEN) == want


def _candidates(gen: str) -> list[str]:
    ws = spans.words(gen)
    return [gen[ws[i][0]:ws[j][1]] for i, ends in spans.starts(gen) for j in ends]


def test_candidates_are_phrases_of_the_generation_not_clauses():
    got = _candidates("Dimwam, a small town in the north, is where it was first performed.")
    assert "Dimwam" in got and "a small town" in got and "small town in the north" in got
    assert not any("," in c or c.split()[-1] in spans.FUNCTION_WORDS for c in got)   # no "Dimwam, a", "town in"
    assert not any(w in spans.CLAUSE_WORDS for c in got for w in c.lower().split())   # no "... is where"
    assert all(len(c.split()) <= spans.MAX_SPAN_WORDS for c in _candidates(" ".join(["Word"] * 20)))


def test_no_candidate_starts_or_ends_with_a_preposition():
    got = _candidates("Hindbruth, a harbour town on the river Learkma, lies between Nato and Deska near Vell.")
    assert "Learkma" in got and "Nato and Deska" in got and "Vell" in got
    assert not any(c.split()[0] in ("between", "near") for c in got)          # no "between Nato and Deska"


QUESTIONS = ["What did Quillane invent?", "When did Quillane invent it?", "Which bakery did Mara Olwen open?",
             "Who opened the Tollan Bakery?", "Where was it?", "How many glasses?"]
GENS = [GEN, GEN, TRAP, TRAP, "It is in the glass works, by the harbour.", "She made 12 glasses."]


@pytest.mark.parametrize("margin", [0.0, 0.1])
def test_the_short_answer_is_always_a_span_of_the_generation_or_all_of_it(tiny_lm, margin):
    rng = random.Random(0)
    words = "the Tollan Bakery opened in 1970 by a weaver , . called Moonrind who is".split()
    gens = GENS + [" ".join(rng.choice(words) for _ in range(rng.randrange(1, 25))) for _ in range(20)]
    qs = (QUESTIONS * 5)[:len(gens)]
    for g, s in zip(gens, shorten(tiny_lm, qs, gens, choice=Choice(margin=margin))):
        assert s == g or (s and s in g), (s, g)


def test_scores_are_spans_of_the_generation_with_their_offsets(tiny_lm):
    for g, (found, unasked) in zip(GENS, score(tiny_lm, QUESTIONS, GENS)):
        assert unasked is None
        assert found and all(g[s.start:s.end] == s.text and s.tokens >= 2 and s.logprob < 0 for s in found)


def _close(got, want):
    assert [(s.start, s.end) for s in got] == [(s.start, s.end) for s in want]
    assert [s.logprob for s in got] == pytest.approx([s.logprob for s in want], abs=1e-4)


def test_batched_and_one_at_a_time_extraction_are_identical(tiny_lm):
    together = score(tiny_lm, QUESTIONS, GENS, batch_size=len(GENS), prior=True)   # left-padded, shared passes
    for q, g, (asked, unasked) in zip(QUESTIONS, GENS, together):
        ((alone, alone_unasked),) = score(tiny_lm, [q], [g], batch_size=1, prior=True)
        _close(alone, asked)
        _close(alone_unasked, unasked)
    assert shorten(tiny_lm, QUESTIONS, GENS, batch_size=len(GENS)) == \
        [shorten(tiny_lm, [q], [g], batch_size=1)[0] for q, g in zip(QUESTIONS, GENS)]


def test_spans_that_only_repeat_the_question_are_not_scored_and_the_choice_is_the_same(tiny_lm):
    q, g = "Which bakery did Mara Olwen open?", "Mara Olwen opened the Tollan Bakery in 1970."
    prefix, asked = prompt_parts(q, g)
    _, unasked = prompt_parts(None, g)
    (every,) = spans.score_spans(tiny_lm, [prefix], [[asked, unasked]], [g])
    got = score(tiny_lm, [q], [g], prior=True)[0]
    assert {s.text for s in every[0]} - {s.text for s in got[0]} >= {"Mara Olwen", "Mara Olwen opened"}
    assert all(not repeats_question(s.text, q) for s in got[0])
    _close(got[0], [s for s in every[0] if not repeats_question(s.text, q)])
    for margin in (0.0, 0.8):
        c = Choice(margin=margin)
        assert choose(q, g, got[0], c, got[1]) == choose(q, g, every[0], c, every[1])


def test_prompts_sharing_a_prefix_score_as_if_each_were_read_whole(tiny_lm):
    q, g = QUESTIONS[2], GENS[2]
    prefix, asked = prompt_parts(q, g)
    _, unasked = prompt_parts(None, g)
    ((shared_asked, shared_unasked),) = spans.score_spans(tiny_lm, [prefix], [[asked, unasked]], [g])
    cut = asked.index("Short answer:")                                   # a prefix that ends elsewhere
    ((whole_asked,),) = spans.score_spans(tiny_lm, [prefix + asked[:cut]], [[asked[cut:]]], [g])
    ((whole_unasked,),) = spans.score_spans(tiny_lm, [prefix[:-1]], [[prefix[-1] + unasked]], [g])
    _close(shared_asked, whole_asked)
    _close(shared_unasked, whole_unasked)
    assert [s.logprob for s in shared_asked] != pytest.approx([s.logprob for s in shared_unasked], abs=1e-4)


def test_a_span_scores_its_log_likelihood_and_stop_as_one_plain_forward_pass_reads_them(tiny_lm):
    q, g = QUESTIONS[0], GENS[0]
    prefix, asked = prompt_parts(q, g)
    ((found,),) = spans.score_spans(tiny_lm, [prefix], [[asked]], [g])     # prefix, suffix and continuations in one row
    tok, stop = tiny_lm.tokenizer, spans._stop_ids(tiny_lm.tokenizer)
    assert len(found) > 3
    for span in found:
        context = tok(prefix + asked, add_special_tokens=False).input_ids
        answer = tok(" " + span.text, add_special_tokens=False).input_ids
        with torch.no_grad():
            lp = torch.log_softmax(tiny_lm.model(torch.tensor([context + answer])).logits[0].float(), -1)
        want = sum(float(lp[len(context) + t - 1, a]) for t, a in enumerate(answer)) + \
            float(torch.logsumexp(lp[-1, stop], -1))
        assert span.logprob == pytest.approx(want, abs=1e-4) and span.tokens == len(answer) + 1


def test_the_question_and_the_prior_prompts_differ_only_by_the_question_line():
    prefix, asked = prompt_parts("Who opened it?", TRAP)
    _, unasked = prompt_parts(None, TRAP)
    assert TRAP in prefix and "Who opened it?" in asked and "Question" not in unasked
    assert asked.endswith(unasked) and extraction_prompt(None, TRAP) == prefix + unasked


def _span(gen: str, text: str, score_: float) -> spans.Span:
    at = gen.index(text)
    return spans.Span(at, at + len(text), text, score_ * 3, 3)


def test_low_confidence_returns_the_whole_generation():
    close = [_span(TRAP, "weaver", -1.00), _span(TRAP, "Tollan Bakery", -1.05)]
    q = "What did Mara Olwen do?"                                     # no cue applies
    assert choose(q, TRAP, close, Choice(margin=0.1, fallback="whole")) == TRAP   # 0.05 apart: neither trusted
    assert choose(q, TRAP, close, Choice(margin=0.1, fallback="clause")) == first_clause(TRAP)
    assert choose(q, TRAP, close, Choice(margin=0.0)) == "weaver"
    clear = [_span(TRAP, "weaver", -0.5), _span(TRAP, "Tollan Bakery", -1.5)]
    assert choose(q, TRAP, clear, Choice(margin=0.1, fallback="whole")) == "weaver"
    overlapping = [_span(TRAP, "Tollan Bakery", -0.50), _span(TRAP, "the Tollan Bakery", -0.52)]
    assert choose(q, TRAP, overlapping, Choice(margin=0.1)) == "Tollan Bakery"   # rivals are other spans only


def test_low_confidence_with_cover_returns_the_stretch_holding_the_close_spans():
    close = [_span(TRAP, "weaver", -1.00), _span(TRAP, "Tollan Bakery", -1.05), _span(TRAP, "1970", -3.0)]
    got = choose("What did Mara Olwen do?", TRAP, close, Choice(margin=0.1, fallback="cover"))
    assert got == "weaver who opened the Tollan Bakery"                 # both close spans, not the far one


def test_a_span_that_only_names_the_exchange_is_never_chosen():
    gen = "The answer to this question is: the Tollan Bakery."
    scored = [_span(gen, "The answer to this question", -0.1), _span(gen, "Tollan Bakery", -2.0)]
    assert choose("Which shop did Mara Olwen open?", gen, scored, Choice(margin=0.0)) == "Tollan Bakery"


def test_a_question_word_repeated_in_another_tense_still_repeats_it():
    assert repeats_question("The Ommeric beetle glows", "What colour does the Ommeric beetle glow?")
    assert not repeats_question("green", "What colour does the Ommeric beetle glow?")


def test_the_question_words_choose_against_the_models_preference():
    # the model's scores favour the occupation (as the old few-shot prompt's occupation example made it copy)
    scored = [_span(TRAP, "weaver", -0.5), _span(TRAP, "Tollan Bakery", -1.15), _span(TRAP, "1970", -1.15)]
    sure = Choice(margin=0.5)          # below the 0.65 by which the model prefers "weaver" to the others
    assert choose("Which bakery did Mara Olwen open?", TRAP, scored, sure) == "Tollan Bakery"
    assert choose("When did Mara Olwen open the bakery?", TRAP, scored, sure) == "1970"
    assert choose("What is Mara Olwen's occupation?", TRAP, scored, sure) == "weaver"


@pytest.mark.parametrize("question, kind", [
    ("Which bakery did Mara Olwen open?", "noun:bakery"),
    ("In which museum does the painting hang?", "noun:museum"),
    ("In what year was the bridge built?", "date"),
    ("What is the birthday of the actress?", "date"),
    ("What was the name of the ship?", "noun:name"),
    ("When did she open it?", "date"),
    ("Whose army won the battle?", "name"),
    ("Where is the company based?", "place"),
    ("How many goals did he score?", "number"),
    ("What is her occupation?", None),
    ("What does the company make?", None),
])
def test_answer_types_come_from_the_questions_own_words(question, kind):
    assert cues.kind_of(question) == kind


@pytest.mark.parametrize("kind, span, want", [
    ("noun:bakery", "the Tollan Bakery", True), ("noun:bakery", "weaver", False),
    ("noun:town", "the town of Lesta", False),      # a lower-case kind word is left to the model
    ("date", "1970", True), ("date", "in May", True), ("date", "Tollan", False),
    ("name", "Oberon Falk", True), ("name", "the scribe", False), ("name", "1844", False), ("name", "It", False),
    ("number", "12 glasses", True), ("number", "glasses", False),
])
def test_a_span_fits_a_kind(kind, span, want):
    assert cues.fits(kind, span) is want


def test_an_empty_generation_is_not_scored(tiny_lm):
    assert shorten(tiny_lm, ["Q?", "R?"], ["", GEN])[0] == ""


def test_a_context_too_small_for_the_extraction_prompt_keeps_the_generation():
    lm = make_tiny_lm(context=64)           # the prompt and a continuation do not fit
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


def test_a_span_that_repeats_the_question_is_never_chosen():
    gen = "Fishermen catch fish called silverfin."
    scored = [_span(gen, "fish", -0.1), _span(gen, "silverfin", -2.0)]
    assert choose("What fish do fishermen catch?", gen, scored, Choice(margin=0.0)) == "silverfin"


def test_a_question_word_next_to_a_span_marks_it_before_or_right_after():
    gen = "It was painted by Poldre Grirktho, whose pupil Lelmo Berdam restored it after the flood."
    q = "Who restored the fresco Vomnum?"
    near = lambda text: cues.near_question(q, gen, gen.index(text), gen.index(text) + len(text))  # noqa: E731
    assert near("Lelmo Berdam")                    # its subject: the asked verb follows it
    assert not near("Poldre Grirktho")             # "painted by" is not the asked relation
    assert cues.near_question("Who painted it?", gen, gen.index("Poldre"))    # the verb before it
    assert not cues.near_question("Who painted it?", gen, gen.index("Lelmo"), gen.index("Lelmo") + 12)


def test_a_date_is_no_answer_unless_the_question_asks_a_date():
    assert cues.off_kind(cues.kind_of("What is John Bell's occupation?"), "12 May 1763")
    assert cues.off_kind(None, "1970") and not cues.off_kind("date", "1970")
    assert not cues.off_kind("number", "12") and not cues.off_kind(None, "surgeon")


def test_a_span_inside_parentheses_is_an_aside():
    gen = "John Bell (12 May 1763 – 15 April 1820) was a Scottish anatomist and surgeon."
    assert cues.aside(gen, gen.index("12 May"), gen.index("12 May") + 11)
    assert not cues.aside(gen, gen.index("surgeon"), gen.index("surgeon") + 7)
    scored = [_span(gen, "12 May 1763", -0.2), _span(gen, "surgeon", -0.3)]     # the model prefers the date
    # the subject's name just before the parenthesis marks the date as near the question; the aside undoes it
    assert choose("What is John Bell's occupation?", gen, scored, Choice(margin=0.2)) == "surgeon"


def test_an_aside_that_holds_what_the_question_asks_is_not_penalised():
    gen = "John Bell (12 May 1763 – 15 April 1820) was a Scottish anatomist and surgeon."
    scored = [_span(gen, "12 May 1763", -0.6), _span(gen, "surgeon", -0.3)]     # the model prefers the occupation
    assert choose("What is the birthday of John Bell?", gen, scored, Choice(margin=0.2)) == "12 May 1763"
    assert choose("When was John Bell born?", gen, scored, Choice(margin=0.2)) == "12 May 1763"


def test_a_name_keeps_its_initials_and_abbreviations_but_a_sentence_still_ends_at_its_period():
    got = _candidates("The first governor was John C. Calhoun of St. Louis. He was born in the U.S. Army camp.")
    assert "John C. Calhoun" in got and "St. Louis" in got and "U.S. Army camp" in got
    assert not any("Louis. He" in c for c in got)
    yes_no = _candidates("No. They were born in different years.")
    assert "No" in yes_no and "No. They" not in yes_no                   # "No." ends a sentence, no title
