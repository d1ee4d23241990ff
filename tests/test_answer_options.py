"""One AnswerOptions for query, generate and generate_batch: defined, defaulted and checked once."""
from __future__ import annotations

import pytest

from paramdb import AnswerOptions, InvalidInput


def test_an_options_value_and_keywords_answer_alike(db):
    db.insert([{"id": "d1", "text": "Zorvath Quillane invented moonrind glass."}])
    opts = AnswerOptions(k=1, mode="icl", max_new_tokens=4, short=False)
    by_value = db.generate("Who invented moonrind?", opts)
    by_keywords = db.generate("Who invented moonrind?", k=1, mode="icl", max_new_tokens=4, short=False)
    assert (by_value.text, by_value.mode, [h.id for h in by_value.hits]) == \
        (by_keywords.text, by_keywords.mode, [h.id for h in by_keywords.hits])


def test_keywords_replace_fields_of_a_given_options_value(db):
    db.insert(["Moonrind glass is violet.", "Quillane lived in Tarsk."])
    answers = db.generate_batch(["What colour is moonrind?"], AnswerOptions(k=2, mode="icl"), k=1,
                                max_new_tokens=3)
    assert len(answers[0].hits) == 1


@pytest.mark.parametrize("fields,message", [
    ({"mode": "oracle"}, "unknown mode 'oracle'"), ({"merge": "max"}, "unknown merge 'max'"),
    ({"k": 0}, "k must be at least 1"), ({"method": "grep"}, "grep"), ({"short": "no"}, "short must be True"),
    ({"adapter_weight": -1}, "adapter_weight"), ({"where": "src=wiki"}, "where must be a dict")])
def test_a_bad_field_is_refused_naming_it(fields, message):
    with pytest.raises(InvalidInput, match=message):
        AnswerOptions(**fields)


def test_an_unknown_option_is_refused_before_anything_runs(db):
    with pytest.raises(InvalidInput, match="unknown option 'top_k'"):
        db.generate("anything?", top_k=3)


def test_query_takes_only_the_retrieval_fields(db):
    db.insert(["Moonrind glass is violet."])
    assert [h.text for h in db.query("moonrind", AnswerOptions(k=1, mode="closed"))] == ["Moonrind glass is violet."]
    with pytest.raises(InvalidInput, match="unknown option 'mode'; valid: k, where, method"):
        db.query("moonrind", mode="prag")
