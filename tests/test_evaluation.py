"""Answer normalisation, EM-in-output, token F1, eval-file loading, the passage corpus and recall."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from paramdb.errors import InvalidInput
from paramdb.evaluation import (EvalItem, corpus, em_in_output, gold_ids, load_items, normalize_answer,
                                passage_id, recall_at_k, score, token_f1)

EVAL_DATA = Path(__file__).resolve().parents[1] / "tools" / "data" / "eval"


@pytest.mark.parametrize("raw, want", [
    ("The Eiffel Tower", "eiffel tower"),
    ("  An   apple a day\n", "apple day"),
    ("Theatre, the, THE.", "theatre"),          # "the" inside a word stays
    ("U.S.A.!", "usa"),
    ("rock-and-roll", "rockandroll"),
    ("«Zürich» — “Paris”…", "zürich paris"),     # unicode punctuation goes, letters stay
    ("Cafe\u0301", "café"),                      # decomposed e + accent == composed é
    ("Ａｎ ｅｘａｍｐｌｅ", "example"),               # full-width letters fold (NFKC)
    ("", ""),
])
def test_normalize_answer(raw, want):
    assert normalize_answer(raw) == want


def test_em_in_output_on_word_boundaries():
    assert em_in_output("He was an English politician.", ["politician"])
    assert em_in_output("The answer is: New York City", ["new york"])
    assert em_in_output("born in the U.S.", ["US", "United States"])
    assert not em_in_output("He was a politicians' aide", ["politician"])   # "politicians" is another word
    assert not em_in_output("Paristown", ["Paris"])
    assert em_in_output("art", ["the art", "part"])                          # "the art" -> "art" matches
    assert not em_in_output("anything", ["the", "  "])                       # empty aliases never match
    assert em_in_output("a Politician", "politician")                        # a single string alias
    assert not em_in_output("", ["x"])


def test_token_f1_known_values():
    assert token_f1("politician", ["politician"]) == 1.0
    assert token_f1("English politician", ["politician"]) == pytest.approx(2 / 3)   # p=1/2, r=1
    assert token_f1("the big red dog", ["red dog house"]) == pytest.approx(2 / 3)   # p=2/3, r=2/3
    assert token_f1("nothing shared", ["politician"]) == 0.0
    assert token_f1("political leader of a party", ["politician", "political leader"]) == \
        pytest.approx(2 * (2 / 4) * 1 / (2 / 4 + 1))                                  # best alias wins
    assert token_f1("dog dog", ["dog"]) == pytest.approx(2 / 3)                        # counts are clipped
    assert token_f1("", ["x"]) == 0.0 and token_f1("x", []) == 0.0
    assert score("An English politician", ["politician"]) == {"em": 1.0, "f1": pytest.approx(2 / 3)}


def write_lines(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


ITEM = {"id": "q1", "question": "Who?", "answers": ["A"], "passages": ["P one.", "P two."]}


def test_load_items_reads_fields_and_skips_blank_lines(tmp_path):
    f = write_lines(tmp_path / "d.jsonl", [ITEM, "", {**ITEM, "id": "q2", "distractor_passages": ["D."],
                                                      "dataset": "X"}])
    items = load_items(f)
    assert [i.id for i in items] == ["q1", "q2"]
    assert items[0].passages == ("P one.", "P two.") and items[0].distractor_passages == ()
    assert items[1].distractor_passages == ("D.",) and items[1].extra == {"dataset": "X"}
    assert [i.id for i in load_items(f, limit=1)] == ["q1"] and load_items(f, limit=0) == []


@pytest.mark.parametrize("line, message", [
    ("{not json", "d.jsonl:2: not valid JSON"),
    ("[1, 2]", "d.jsonl:2: expected a JSON object, got list"),
    ({"id": "q9", "question": "Q"}, "d.jsonl:2: missing fields answers, passages"),
    ({**ITEM, "id": "q9", "answers": "A"}, "d.jsonl:2: field 'answers' must be a list of non-empty strings"),
    ({**ITEM, "id": "q9", "passages": []}, "d.jsonl:2: field 'passages' is empty"),
    ({**ITEM, "id": 7}, "d.jsonl:2: field 'id' must be a non-empty string"),
    ({**ITEM, "id": "q9", "question": " "}, "d.jsonl:2: field 'question' must be a non-empty string"),
    ({**ITEM, "id": "q9", "distractor_passages": [3]}, "d.jsonl:2: field 'distractor_passages' must be"),
    (ITEM, "d.jsonl:2: id 'q1' already used on line 1"),
])
def test_malformed_lines_name_file_and_line(tmp_path, line, message):
    f = write_lines(tmp_path / "d.jsonl", [ITEM, line])
    with pytest.raises(InvalidInput) as e:
        load_items(f)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_missing_file_is_invalid_input(tmp_path):
    with pytest.raises(InvalidInput, match="nope.jsonl: cannot read"):
        load_items(tmp_path / "nope.jsonl")
    with pytest.raises(InvalidInput):
        load_items(tmp_path / "nope.jsonl", limit=-1)


def item(i: str, gold: list[str], distractors: list[str] = ()) -> EvalItem:
    return EvalItem(id=i, question="q", answers=("a",), passages=tuple(gold), distractor_passages=tuple(distractors))


def test_corpus_deduplicates_and_gold_wins():
    items = [item("1", ["Alpha.", "Beta."], ["Gamma.", "Delta."]),
             item("2", ["Gamma.", "Alpha. "], ["Beta.", "Epsilon."])]
    gold_only = corpus(items, distractors=False)
    assert [d["text"] for d in gold_only] == ["Alpha.", "Beta.", "Gamma."]
    assert all(d["metadata"] == {"source": "gold"} for d in gold_only)
    full = corpus(items, distractors=True)
    assert [d["text"] for d in full] == ["Alpha.", "Beta.", "Gamma.", "Delta.", "Epsilon."]
    assert {d["text"]: d["metadata"]["source"] for d in full} == {
        "Alpha.": "gold", "Beta.": "gold", "Gamma.": "gold", "Delta.": "distractor", "Epsilon.": "distractor"}
    assert len({d["id"] for d in full}) == 5
    assert gold_ids(items[1]) == {passage_id("Gamma."), passage_id("Alpha.")}
    assert gold_ids(items[1]) <= {d["id"] for d in gold_only}


def test_passage_ids_are_stable():
    # a fixed value: ids must not change between runs, machines or versions
    assert passage_id("Alpha.") == "p-f4a37cd674a3c0d4"  # sha1("Alpha.")[:16]
    assert passage_id("Alpha.") == passage_id("  Alpha.\n") != passage_id("alpha.")
    assert len(passage_id("x")) == 18 and passage_id("x").startswith("p-")


def test_recall_at_k():
    assert recall_at_k(["a", "b", "c"], {"a", "z"}) == 0.5
    assert recall_at_k([], {"a"}) == 0.0 and recall_at_k(["a", "a"], {"a"}) == 1.0
    with pytest.raises(InvalidInput):
        recall_at_k(["a"], set())


@pytest.mark.parametrize("name", ["popqa_dev.jsonl", "hotpotqa_dev.jsonl"])
def test_real_eval_file_loads(tmp_path, name):
    src = EVAL_DATA / name
    with src.open(encoding="utf-8") as f:
        first = f.readline()
    items = load_items(write_lines(tmp_path / name, [first]))
    assert len(items) == 1 and items[0].question and items[0].answers and items[0].passages
    docs = corpus(items, distractors=True)
    assert gold_ids(items[0]) <= {d["id"] for d in docs}
    assert load_items(src, limit=3)[0] == items[0]


def test_paired_bootstrap_gives_the_mean_difference_inside_its_interval():
    from paramdb.evaluation import paired_bootstrap
    a = [1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0]
    b = [0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    r = paired_bootstrap(a, b)
    assert r["diff"] == 0.375 and r["ci95"][0] <= 0.375 <= r["ci95"][1] and r["ci95"][0] < r["ci95"][1]
    assert paired_bootstrap(a, a) == {"diff": 0.0, "ci95": [0.0, 0.0]}


def test_paired_bootstrap_refuses_lists_of_different_lengths():
    from paramdb.evaluation import paired_bootstrap
    with pytest.raises(ValueError):
        paired_bootstrap([1.0, 0.0], [1.0])
