"""Short answers: a store created with them also trains "question -> short answer span" and asks for short
answers; other stores, and stores made before, keep their sentence answers and prompts."""
from __future__ import annotations

import pytest

from conftest import FAST_TRAINING
from paramdb import ParamDB
from paramdb.config import StoreConfig
from paramdb.knowledge import augment, prompts
from paramdb.knowledge.augment import AugmentSettings, _cloze, build_samples, short_span

SHORT = AugmentSettings(short_answers=True, max_question_tokens=4)
SENT = "Quillane invented a blue glass called moonrind in 1987."


@pytest.mark.parametrize("answer, want", [
    ("moonrind", "moonrind"),
    (" Moonrind.", "moonrind"),              # trimmed, and written as the sentence writes it
    ("1987", "1987"),
    ("red glass", None),                      # not in the sentence: never an invented answer
    ("Quillane", None),                       # already in the question
    ("", None),
    (SENT, None),                             # the whole sentence is no short answer
])
def test_short_span_keeps_only_a_short_span_of_the_sentence_not_in_the_question(answer, want):
    assert short_span(answer, SENT, "What did Quillane invent?") == want


def test_short_answer_samples_sit_beside_the_sentence_samples_with_the_short_prompt(tiny_lm, monkeypatch):
    lines = iter([["What did Quillane invent? Answer: moonrind", "What glows at night? Answer: nothing here"]])
    monkeypatch.setattr(augment, "greedy", lambda lm, ps, n: next(lines))
    text = SENT + " It glows at night."
    (samples,) = build_samples(tiny_lm, [text], SHORT)
    tok, eos = tiny_lm.tokenizer, tiny_lm.tokenizer.eos_token
    assert [(s.prompt, s.target) for s in samples[1:]] == [
        (prompts.question_prompt(tok, "What did Quillane invent?"), SENT + eos),
        (prompts.question_prompt(tok, "What did Quillane invent?", short=True), "moonrind" + eos),
        (prompts.question_prompt(tok, "What glows at night?"), "It glows at night." + eos)]


def test_an_unusable_question_gets_the_cloze_prompt_and_no_short_sample(tiny_lm, monkeypatch):
    monkeypatch.setattr(augment, "greedy", lambda lm, ps, n: ["garbage Answer: moonrind"] * len(ps))
    (samples,) = build_samples(tiny_lm, [SENT], SHORT)
    assert [s.prompt for s in samples[1:]] == [prompts.question_prompt(tiny_lm.tokenizer, _cloze(SENT))]


def test_the_short_prompt_asks_for_a_short_answer_and_differs_from_the_plain_one(tiny_lm):
    tok = tiny_lm.tokenizer                       # no chat template: the plain format
    assert prompts.question_prompt(tok, "Who?", short=True).endswith("Short answer:")
    assert prompts.question_prompt(tok, "Who?", ["P."], short=True) != prompts.question_prompt(tok, "Who?", ["P."])


def test_short_answers_are_chosen_at_creation_and_stores_made_before_keep_sentence_answers():
    assert StoreConfig("m", "f", "e", 4, FAST_TRAINING).augment.short_answers is False
    chosen = StoreConfig("m", "f", "e", 4, FAST_TRAINING, augment=AugmentSettings(short_answers=True)).to_json()
    assert StoreConfig.from_json(chosen).augment.short_answers is True
    old = StoreConfig("m", "f", "e", 4, FAST_TRAINING).to_json()
    del old["augment"]["short_answers"]           # a config written before the field existed
    old["training"] = {"rank": 2}
    assert StoreConfig.from_json(old).augment.short_answers is False


def test_a_store_created_with_short_answers_keeps_them_and_refuses_a_change_on_open(tmp_path, tiny_lm, embedder):
    from paramdb.errors import InvalidInput

    with ParamDB.open(tmp_path / "s", create=True, model=tiny_lm, embedder=embedder, training=FAST_TRAINING,
                      augment={"short_answers": True}) as db:
        assert db.config.augment.short_answers is True
    with ParamDB.open(tmp_path / "s", model=tiny_lm, embedder=embedder) as db:
        assert db.config.augment.short_answers is True
    with pytest.raises(InvalidInput, match="fixed when a store is created"):
        ParamDB.open(tmp_path / "s", model=tiny_lm, embedder=embedder, augment={"short_answers": False})


def test_generate_asks_with_the_prompt_the_stores_adapters_were_trained_with(tmp_path, tiny_lm, embedder,
                                                                              monkeypatch):
    import paramdb.engine.answer as dbmod

    seen = []
    with ParamDB.open(tmp_path / "s", create=True, model=tiny_lm, embedder=embedder, training=FAST_TRAINING,
                      augment={"short_answers": True}) as db:
        db.insert([{"id": "d1", "text": SENT}])
        monkeypatch.setattr(dbmod, "greedy", lambda lm, ps, n, **kw: seen.extend(ps) or ["x"] * len(ps))
        db.generate("What did Quillane invent?", k=1, mode="prag")
    assert seen == [prompts.question_prompt(tiny_lm.tokenizer, "What did Quillane invent?", short=True)]


def test_the_translators_context_teacher_asks_a_short_sample_in_the_short_style(tiny_lm):
    from paramdb.knowledge.distill import _question_of, _with_passage

    tok = tiny_lm.tokenizer
    for short in (False, True):
        prompt = prompts.question_prompt(tok, "Who invented moonrind?", short=short)
        assert _question_of(tok, prompt) == ("Who invented moonrind?", short)
        assert _with_passage(tok, prompt, SENT) == prompts.question_prompt(tok, "Who invented moonrind?", [SENT],
                                                                           short=short)


@pytest.mark.parametrize("mode, short, asked_short", [
    ("closed", True, True), ("icl", True, True),         # no adapter learned a sentence: ask for a short answer
    ("closed", False, False), ("icl", False, False),     # the whole generation wanted: the plain prompt
    ("prag", True, False), ("combine", True, False),     # as the adapters were trained (sentence answers)
])
def test_a_store_without_short_answers_asks_for_one_only_where_no_adapter_answers(tmp_path, tiny_lm, embedder,
                                                                                  monkeypatch, mode, short,
                                                                                  asked_short):
    import paramdb.engine.answer as dbmod

    seen = []
    with ParamDB.open(tmp_path / "s", create=True, model=tiny_lm, embedder=embedder, training=FAST_TRAINING) as db:
        db.insert([{"id": "d1", "text": SENT}])
        monkeypatch.setattr(dbmod, "greedy", lambda lm, ps, n, **kw: seen.extend(ps) or ["x"] * len(ps))
        db.generate("What did Quillane invent?", k=1, mode=mode, short=short)
    passages = [SENT] if mode in ("icl", "combine") else None
    assert seen == [prompts.question_prompt(tiny_lm.tokenizer, "What did Quillane invent?", passages,
                                            short=asked_short)]
