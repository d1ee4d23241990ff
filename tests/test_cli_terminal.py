"""Stored data cannot drive the terminal: human output shows control characters as escapes, JSON stays exact."""
from __future__ import annotations

import json
import sqlite3

import pytest

from paramdb import ParamDB
from paramdb.cli.output import shown_id, terminal_safe
from paramdb.types import Answer
from test_cli import CLI_TRAINING, opened, run  # noqa: F401  (opened: autouse fixture giving the CLI the tiny model)

CLEAR = "\x1b[2J"
TITLE = "\x1b]0;pwned\x07"          # OSC: set the window title
HOSTILE = [
    {"id": f"evil{CLEAR}", "text": f"Moonrind glass{CLEAR} is made in Quillane.{TITLE}",
     "metadata": {"src": f"wiki{TITLE}", "c1": "\x9b31m"}},
    {"id": "two\nlines", "text": "Line one of the text.\nLine two of the text.", "metadata": {}},
]


@pytest.fixture
def hostile_store(tmp_path, tiny_lm, embedder):
    """Texts and metadata with terminal escapes, and ids with them too: inserts refuse such ids now, so they
    are written the way a store made before that check could hold them, straight into its SQL rows."""
    path = tmp_path / "store"
    with ParamDB.open(path, create=True, model=tiny_lm, embedder=embedder, training=CLI_TRAINING) as db:
        db.insert([{**d, "id": f"plain{i}"} for i, d in enumerate(HOSTILE)])
    with sqlite3.connect(path / "meta.sqlite") as conn:
        for i, d in enumerate(HOSTILE):
            conn.execute("UPDATE documents SET id = ? WHERE id = ?", (d["id"], f"plain{i}"))
    return str(path)


def assert_no_controls(text: str) -> None:
    assert not any(c in text for c in "\x1b\x07\x9b"), repr(text)


def test_ls_escapes_control_characters_and_shows_each_id_on_one_line(hostile_store):
    result = run("ls", hostile_store)
    assert result.exit_code == 0, result.output
    assert_no_controls(result.stdout)
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("evil\\x1b[2J  ") and "\\x1b]0;pwned\\x07" in lines[0] and "\\x9b31m" in lines[0]
    assert lines[1].startswith("two\\nlines  ")


def test_ls_json_keeps_ids_text_and_metadata_exact(hostile_store):
    listed = json.loads(run("ls", hostile_store, "--json").stdout)
    assert [{k: row[k] for k in ("id", "text", "metadata")} for row in listed] == HOSTILE


def test_get_escapes_controls_but_keeps_the_texts_own_line_breaks(hostile_store):
    out = run("get", hostile_store, f"evil{CLEAR}").stdout
    assert_no_controls(out)
    assert "id: evil\\x1b[2J" in out and "pwned\\x07" in out
    assert run("get", hostile_store, "two\nlines").stdout.endswith("Line one of the text.\nLine two of the text.\n")


def test_query_escapes_the_ids_and_texts_it_shows(hostile_store):
    result = run("query", hostile_store, "moonrind glass", "-k", 2)
    assert result.exit_code == 0, result.output
    assert_no_controls(result.stdout)
    assert "evil\\x1b[2J" in result.stdout


def test_generate_escapes_the_answer_text(hostile_store, monkeypatch):
    monkeypatch.setattr(ParamDB, "generate",
                        lambda self, q, options=None, /, **kw: Answer(text=f"{CLEAR}boom{TITLE}", mode="prag"))
    result = run("generate", hostile_store, "what?")
    assert result.exit_code == 0, result.output
    assert result.stdout == "\\x1b[2Jboom\\x1b]0;pwned\\x07\n"


def test_an_error_naming_a_hostile_id_is_escaped_too(hostile_store):
    result = run("get", hostile_store, f"nope{TITLE}")
    assert result.exit_code == 3
    assert_no_controls(result.stderr)


def test_an_id_escapes_backslashes_so_a_literal_backslash_n_differs_from_a_newline():
    assert shown_id("a\nb") == "a\\nb" and shown_id("a\\nb") == "a\\\\nb"


def test_bidirectional_overrides_are_escaped():
    assert terminal_safe("abc\u202edcba") == "abc\\u202edcba"
