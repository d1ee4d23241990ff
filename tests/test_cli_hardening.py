"""Hostile input at the command line: one `error:` line and a user's exit code, never rc 70."""
from __future__ import annotations

import json

import pytest

from test_cli import assert_error, opened, run, store, stored_ids, template_store  # noqa: F401

NESTED_3000 = '{"$and": [' * 3000 + '{"year": 2020}' + ']}' * 3000


@pytest.mark.parametrize("args,fragment", [
    (["--where", "year=100000000000000000000"], "beyond 64 bits"),
    (["--where-json", NESTED_3000], "nested too deeply"),
    (["--where-json", '{"year": NaN}'], "not a finite number"),
    (["--where", "a\\b=1"], "backslash"),
], ids=["int>64bit", "3000-deep", "NaN", "backslash-key"])
def test_a_where_filter_sql_cannot_run_exits_2(store, args, fragment):
    assert_error(run("query", store, "sky", *args), 2, fragment)


def test_query_text_with_undecodable_bytes_exits_2(store):
    assert_error(run("query", store, "sky\udcff"), 2, "lone surrogate")    # how argv carries bad bytes


def test_get_of_an_id_with_undecodable_bytes_exits_2(store):
    assert_error(run("get", store, "sky\udcff"), 2, "lone surrogate")


@pytest.mark.parametrize("line,fragment", [
    ('{"id": "m", "text": "t", "metadata": {"a": {"b": NaN}}}', "metadata.a.b is not a finite number"),
    ('{"id": "a\\u0000b", "text": "t"}', "control character"),
    ('{"id": "m", "text": "caf\\ud800"}', "lone surrogate"),
    ('{"id": "m", "text": "t", "metadata": {"a\\"b": 1}}', "which a filter cannot name"),
    ('{"id": "m", "text": "t", "metadata": ' + '{"x": ' * 3000 + '1' + '}' * 3001, "nested too deeply"),
], ids=["nested-NaN", "NUL-id", "surrogate-text", "quote-key", "3000-deep"])
def test_insert_of_a_hostile_jsonl_line_exits_2_naming_the_line_and_adds_nothing(store, tmp_path, line, fragment):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"id": "fine", "text": "A fine line."}\n' + line + "\n")
    before = stored_ids(store)
    assert_error(run("insert", store, f), 2, f"{f}:2", fragment)
    assert stored_ids(store) == before


def test_filtered_queries_keep_working_after_a_hostile_insert_was_refused(store, tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"id": "m", "text": "t", "metadata": {"a": {"b": NaN}}}\n')
    run("insert", store, f)
    result = run("ls", store, "--where", "topic=sky", "--json")
    assert result.exit_code == 0, result.output
    assert [d["id"] for d in json.loads(result.stdout)] == ["sky"]


@pytest.mark.parametrize("repair", [[], ["--repair"]], ids=["check", "check --repair"])
def test_check_of_damaged_lmdb_pages_reports_them_and_exits_1(store, repair):
    from pathlib import Path

    from paramdb import ParamDB
    from test_store_hardening import damage_page_holding

    with ParamDB.open(store) as db:
        key = db.handle.store.meta.all_rows_keys()[0][2]
    damage_page_holding(Path(store), key.encode())
    result = run("check", store, *repair)
    assert result.exit_code == 1, result.output
    assert "error: lmdb-corrupt:" in result.stderr and "restore the store from a backup" in result.stderr
    assert "PROBLEMS FOUND" in result.stdout and "Traceback" not in result.output
