"""Nothing longer than the model's context reaches it: huge documents, passages and questions are cut or refused."""
from __future__ import annotations

import faulthandler
import random
import time

import pytest

from conftest import FAST_TRAINING, make_tiny_lm
from paramdb import InvalidInput, ParamDB
from paramdb.knowledge import budget
from paramdb.knowledge.augment import PIECE_CHARS, PIECE_WORDS, sentences

CONTEXT = 256
WORDS = "amber basalt cobalt dune ember fjord glacier harbor island jasper kelp lagoon meadow nectar".split()


def unpunctuated(n_bytes: int, seed: int = 0) -> str:
    """About ``n_bytes`` of words with no sentence punctuation at all: one 'sentence'."""
    rng = random.Random(seed)
    words, size = [], 0
    while size < n_bytes:
        words.append(rng.choice(WORDS))
        size += len(words[-1]) + 1
    return " ".join(words)


@pytest.fixture(scope="module")
def short_lm():
    return make_tiny_lm(context=CONTEXT, name="tiny-llama-256")


@pytest.fixture
def positions(short_lm):
    """The most positions any forward pass of the model attended over (prompt plus generated tokens)."""
    seen = [0]

    def hook(module, args, kwargs):
        ids = kwargs.get("input_ids")
        cache = kwargs.get("cache_position")
        seen[0] = max(seen[0], int(cache.max()) + 1 if cache is not None else ids.shape[1])
    handle = short_lm.model.model.register_forward_pre_hook(hook, with_kwargs=True)
    yield seen
    handle.remove()


@pytest.fixture
def hang_guard():
    """A hang fails the run with every thread's traceback instead of blocking it."""
    faulthandler.dump_traceback_later(240, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(scope="module")
def huge_store(tmp_path_factory, short_lm, embedder):
    path = tmp_path_factory.mktemp("bounds") / "store"
    with ParamDB.open(path, create=True, model=short_lm, embedder=embedder, training=FAST_TRAINING) as db:
        db.insert([{"id": "small", "text": "Moonrind glass is made in Quillane."}])
    return path


def test_a_1mb_unpunctuated_document_inserts_in_bounded_time_within_the_context(huge_store, short_lm, embedder,
                                                                                 positions, hang_guard):
    start = time.monotonic()
    with ParamDB.open(huge_store, model=short_lm, embedder=embedder) as db:
        db.insert([{"id": "huge", "text": unpunctuated(1_000_000)}])
        assert len(db.get("huge").text) >= 1_000_000
    assert time.monotonic() - start < 120
    assert 0 < positions[0] <= CONTEXT


def test_icl_over_a_huge_passage_cuts_it_to_fit_and_says_so(huge_store, short_lm, embedder, positions):
    with ParamDB.open(huge_store, model=short_lm, embedder=embedder) as db:
        if "huge" not in db:
            db.insert([{"id": "huge", "text": unpunctuated(1_000_000)}])
        answer = db.generate("amber basalt cobalt", k=2, mode="icl", max_new_tokens=16)
    assert {h.id for h in answer.hits} == {"huge", "small"}
    assert len(answer.notes) == 1 and "was cut to" in answer.notes[0] and f"{CONTEXT}-token" in answer.notes[0]
    assert 0 < positions[0] <= CONTEXT


def test_a_question_longer_than_half_the_prompt_budget_is_refused_naming_the_limit(huge_store, short_lm, embedder):
    with ParamDB.open(huge_store, model=short_lm, embedder=embedder) as db:
        with pytest.raises(InvalidInput, match=r"question is longer than 104 tokens.*256-token context"):
            db.generate("why " * 100_000 + "?", mode="closed", max_new_tokens=48)
        with pytest.raises(InvalidInput, match=r"question 2 is longer"):
            db.generate_batch(["Short?", "why " * 500], mode="prag")


def test_max_new_tokens_that_leave_no_room_for_a_prompt_are_refused(huge_store, short_lm, embedder):
    with ParamDB.open(huge_store, model=short_lm, embedder=embedder) as db:
        with pytest.raises(InvalidInput, match="max_new_tokens 250 leaves no room"):
            db.generate("Where is moonrind made?", mode="closed", max_new_tokens=250)


def test_a_long_sentence_is_cut_into_bounded_pieces_and_only_the_first_are_made():
    pieces = sentences(unpunctuated(1_000_000), limit=12)
    assert len(pieces) == 12
    assert all(len(p) <= PIECE_CHARS and len(p.split()) <= PIECE_WORDS for p in pieces)


def test_a_single_word_longer_than_a_piece_is_cut_too():
    assert [len(p) for p in sentences("x" * 1300, limit=12)] == [PIECE_CHARS, PIECE_CHARS, 1300 - 2 * PIECE_CHARS]


def test_clip_cuts_at_a_token_boundary_and_reports_it(short_lm):
    tok = short_lm.tokenizer
    text, cut = budget.clip(tok, unpunctuated(100_000), 50)
    assert cut and len(tok(text, add_special_tokens=False).input_ids) <= 50
    assert budget.clip(tok, "amber basalt", 50) == ("amber basalt", False)


def test_share_gives_short_texts_all_they_need_and_splits_the_rest():
    assert budget.share([10, 1000, 1000], 210) == [10, 100, 100]
    assert budget.share([5, 5], 100) == [5, 5]


def test_the_cli_refuses_a_100kb_question_with_one_line_and_exit_2(huge_store, monkeypatch, short_lm, embedder):
    from click.testing import CliRunner

    from paramdb.cli import commands, main

    real = commands.open_db
    monkeypatch.setattr(commands, "open_db", lambda path, create=False, **kw: real(
        path, create, **{**kw, "model": short_lm, "embedder": embedder}))
    result = CliRunner().invoke(main, ["generate", str(huge_store), "why " * 25_000 + "?", "--mode", "icl"])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: question is longer than") and result.stderr.count("\n") == 1


def test_a_question_writing_prompt_shows_at_most_max_fill_tokens_of_passage_and_sentence(short_lm, monkeypatch):
    from paramdb.knowledge import augment, prompts

    monkeypatch.setattr(augment, "MAX_FILL_TOKENS", 40)
    tok, template = short_lm.tokenizer, prompts.QUESTION_FEW_SHOT
    text = unpunctuated(50_000)
    prompt = augment._fitted(short_lm, template, text, sentences(text, 1)[0], 16)
    bare = len(tok(template.format(passage="", sentence=""), add_special_tokens=False).input_ids)
    assert bare < len(tok(prompt, add_special_tokens=False).input_ids) <= bare + 40 + 4
