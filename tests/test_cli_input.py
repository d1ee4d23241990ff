"""Reading input for `paramdb insert` and `paramdb generate --questions`: the formats, and every bad input
refused with a one-line message that names the place, adding nothing to the store."""
from __future__ import annotations

import json

import pytest

from test_cli import IDS, assert_error, opened, run, store, stored_ids, template_store  # noqa: F401
from paramdb import ParamDB


def write(path, text: str) -> str:
    path.write_text(text)
    return str(path)


def jsonl(*objs) -> str:
    return "".join(json.dumps(o) + "\n" for o in objs)


# ------------------------------------------------------------------------------------------ formats
def test_insert_jsonl_with_ids_metadata_and_blank_lines(store, tmp_path):
    f = write(tmp_path / "docs.jsonl", jsonl({"id": "moon", "text": "The moon is square.", "metadata": {"n": 1}})
              + "\n   \n" + jsonl({"text": "Stars hum at night."}))
    result = run("insert", store, f)
    assert result.exit_code == 0, result.output
    assert "inserted 2 documents" in result.stdout
    ids = stored_ids(store)
    assert ids[:3] == IDS and ids[3] == "moon" and len(ids) == 5
    with ParamDB.open(store) as db:
        assert db.get("moon").metadata == {"n": 1}


def test_insert_txt_is_one_document_named_by_its_stem(store, tmp_path):
    f = write(tmp_path / "notes.txt", "Line one.\n\nLine two of the same document.\n")
    assert run("insert", store, f).exit_code == 0
    with ParamDB.open(store) as db:
        assert db.get("notes").text.startswith("Line one.\n\nLine two")


def test_insert_reads_jsonl_from_stdin(store):
    result = run("insert", store, "-", "--json", input=jsonl({"id": "in", "text": "Piped in."}))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"inserted": 1, "ids": ["in"]}
    assert "in" in stored_ids(store)


def test_insert_several_files_at_once(store, tmp_path):
    a = write(tmp_path / "a.jsonl", jsonl({"id": "a1", "text": "Alpha."}))
    b = write(tmp_path / "b.md", "Beta.")
    assert run("insert", store, a, b).exit_code == 0
    assert stored_ids(store)[3:] == ["a1", "b"]


def test_insert_shows_progress_with_rate_and_eta(store, tmp_path):
    f = write(tmp_path / "docs.jsonl", jsonl({"text": "One."}, {"text": "Two."}))
    result = run("insert", store, f, "--batch-size", 1)
    assert "1/2 docs" in result.stderr and "2/2 docs" in result.stderr
    assert "docs/s" in result.stderr and "ETA" in result.stderr


def test_insert_create_makes_the_store(tmp_path, opened):
    f = write(tmp_path / "docs.jsonl", jsonl({"id": "x", "text": "Ex."}))
    path = tmp_path / "fresh"
    assert run("insert", path, f, "--create", "--device", "cpu").exit_code == 0
    assert opened[-1]["create"] and opened[-1]["device"] == "cpu"
    assert stored_ids(path) == ["x"]


def test_upsert_replaces_the_text(store, tmp_path):
    f = write(tmp_path / "docs.jsonl", jsonl({"id": "sky", "text": "The sky is now orange."}))
    result = run("insert", store, f, "--upsert")
    assert result.exit_code == 0 and "upserted 1" in result.stdout
    with ParamDB.open(store) as db:
        assert len(db) == 3 and db.get("sky").text == "The sky is now orange."


# ------------------------------------------------------------------------------------------ bad documents
def test_missing_file_names_the_file(store, tmp_path):
    good = write(tmp_path / "good.jsonl", jsonl({"text": "Fine."}))
    missing = str(tmp_path / "missing.jsonl")
    assert_error(run("insert", store, good, missing), 2, missing)
    assert stored_ids(store) == IDS


def test_malformed_jsonl_names_file_and_line(store, tmp_path):
    f = write(tmp_path / "docs.jsonl", jsonl({"text": "One."}, {"text": "Two."}) + '{"text": "Three." "id": 3}\n')
    assert_error(run("insert", store, f), 2, f"{f}:3: invalid JSON: Expecting ',' delimiter")
    assert stored_ids(store) == IDS


def test_jsonl_line_that_is_not_an_object_names_file_and_line(store, tmp_path):
    f = write(tmp_path / "docs.jsonl", jsonl({"text": "One."}, ["Two."]))
    assert_error(run("insert", store, f), 2, f"{f}:2:", "JSON object")
    assert stored_ids(store) == IDS


def test_empty_text_says_the_text_is_empty(store, tmp_path):
    f = write(tmp_path / "docs.jsonl", jsonl({"text": "One."}, {"text": "   "}))
    assert_error(run("insert", store, f), 2, f"{f}:2: text is empty")
    assert stored_ids(store) == IDS


def test_empty_txt_file_says_the_text_is_empty(store, tmp_path):
    f = write(tmp_path / "blank.txt", "\n")
    assert_error(run("insert", store, f), 2, f"{f}: text is empty")


def test_unknown_field_is_named(store, tmp_path):
    f = write(tmp_path / "docs.jsonl", jsonl({"txt": "One."}))
    assert_error(run("insert", store, f), 2, f"{f}:1:", "'txt'")


def test_duplicate_id_in_the_store_names_it_and_adds_nothing(store, tmp_path):
    f = write(tmp_path / "docs.jsonl", jsonl({"id": "new", "text": "New."}, {"id": "sky", "text": "Again."}))
    assert_error(run("insert", store, f), 2, "duplicate id 'sky'")
    assert stored_ids(store) == IDS


def test_duplicate_id_inside_the_input_names_both_places(store, tmp_path):
    f = write(tmp_path / "docs.jsonl", jsonl({"id": "twin", "text": "A."}, {"id": "twin", "text": "B."}))
    assert_error(run("insert", store, f), 2, f"{f}:2: duplicate id 'twin'", f"{f}:1")
    assert stored_ids(store) == IDS


def test_duplicate_id_across_files_names_both_files(store, tmp_path):
    a = write(tmp_path / "twin.txt", "A.")
    b = write(tmp_path / "docs.jsonl", jsonl({"id": "twin", "text": "B."}))
    assert_error(run("insert", store, a, b), 2, "duplicate id 'twin'", a, f"{b}:1")
    assert stored_ids(store) == IDS


def test_insert_into_missing_store_says_there_is_no_store(tmp_path):
    f = write(tmp_path / "docs.jsonl", jsonl({"text": "One."}))
    missing = tmp_path / "nowhere"
    assert_error(run("insert", missing, f), 4, f"no store at {missing}")
    assert not missing.exists()


def test_bad_input_does_not_create_a_store(tmp_path):
    f = write(tmp_path / "docs.jsonl", "{oops\n")
    path = tmp_path / "fresh"
    assert_error(run("insert", path, f, "--create"), 2, f"{f}:1")
    assert not path.exists()


# ------------------------------------------------------------------------------------------ questions
def test_questions_file_streams_one_json_line_per_question(store, tmp_path):
    f = write(tmp_path / "q.jsonl", jsonl({"question": "Sky?", "id": "q1"}, {"question": "Grass?"},
                                          {"question": "River?", "id": 3}))
    result = run("generate", store, "--questions", f, "--batch-size", 2, "--max-new-tokens", 3, "-k", 1)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(o["id"], o["question"]) for o in lines] == [("q1", "Sky?"), (None, "Grass?"), (3, "River?")]
    assert all(isinstance(o["answer"], str) and len(o["hits"]) == 1 and o["mode"] == "prag" for o in lines)


def test_questions_from_stdin(store):
    result = run("generate", store, "--questions", "-", "--mode", "closed", "--max-new-tokens", 2,
                 input=jsonl({"question": "Why?"}))
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 1


@pytest.mark.parametrize("line, fragment", [
    ('{"question": "  "}', "question is empty"),
    ('{"q": "Why?"}', "'question'"),
    ('{"question": 5}', "'question'"),
    ('{"question": "Why?",}', "invalid JSON"),
])
def test_bad_question_line_names_file_and_line(store, tmp_path, line, fragment):
    f = write(tmp_path / "q.jsonl", jsonl({"question": "Fine?"}) + line + "\n")
    result = run("generate", store, "--questions", f)
    assert_error(result, 2, f"{f}:2:", fragment)
    assert result.stdout == ""


def test_missing_questions_file_names_the_file(store, tmp_path):
    missing = str(tmp_path / "q.jsonl")
    assert_error(run("generate", store, "--questions", missing), 2, missing)
