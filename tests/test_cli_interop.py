"""`paramdb export` / `paramdb import` on the command line: results, and one-line errors with the store unchanged."""
from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

pytest.importorskip("peft")

from peft_helpers import DOCS, open_store, save_tiny  # noqa: E402
from paramdb.cli import main  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def built(tmp_path_factory, embedder):
    root = tmp_path_factory.mktemp("cli")
    model = save_tiny(root / "tiny-llama")
    with open_store(root / "s", model, embedder) as db:
        db.insert(DOCS)
    return root


@pytest.fixture
def store(built, tmp_path):
    shutil.copytree(built / "s", tmp_path / "s")
    return str(tmp_path / "s")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def rows(store):
    return json.loads(run("ls", store, "--json").stdout)


def assert_one_line_error(r, code: int, *words: str):
    assert r.exit_code == code, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.output
    assert all(w in lines[0] for w in words), lines[0]


def test_export_then_import_round_trips_a_row(store, tmp_path):
    r = run("export", store, "quill", "--peft", tmp_path / "q", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["folders"] == {"quill": str(tmp_path / "q")}
    (tmp_path / "t.txt").write_text("Quillane's glass, again.")
    r = run("import", store, tmp_path / "q", "--id", "quill2", "--text-file", tmp_path / "t.txt",
            "--metadata", '{"src": "peft"}')
    assert r.exit_code == 0, r.output
    assert "imported 'quill2' (rank 2; base model checked by weight fingerprint)" in r.stdout
    assert {"id": "quill2", "text": "Quillane's glass, again.", "metadata": {"src": "peft"}, "adapter": "imported"} in rows(store)


def test_export_of_a_questions_merge_reports_its_documents(store, tmp_path):
    r = run("export", store, "--question", "Who invented moonrind glass?", "-k", "2", "--peft", tmp_path / "m")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("wrote the merge of 2 adapters") and "rank 4" in r.stdout


def test_export_of_an_unknown_id_exits_3_and_writes_nothing(store, tmp_path):
    assert_one_line_error(run("export", store, "quill", "nope", "--peft", tmp_path / "x"), 3, "nope")
    assert not (tmp_path / "x").exists()


def test_export_into_a_non_empty_folder_exits_2(store, tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("")
    assert_one_line_error(run("export", store, "quill", "--peft", tmp_path / "x"), 2, "not empty", "--force")


def test_export_needs_ids_or_a_question(store, tmp_path):
    r = run("export", store, "--peft", tmp_path / "x")
    assert r.exit_code == 2 and "give ID... or --question" in r.output


def test_import_of_a_folder_that_is_not_an_adapter_exits_2(store, tmp_path):
    before = rows(store)
    (tmp_path / "t.txt").write_text("text")
    (tmp_path / "d").mkdir()
    assert_one_line_error(run("import", store, tmp_path / "d", "--id", "x", "--text-file", tmp_path / "t.txt"),
                          2, str(tmp_path / "d"), "adapter_config.json")
    assert rows(store) == before


def test_import_for_another_model_exits_5(store, tmp_path, built):
    before = rows(store)
    from test_peft_import import make_peft_adapter
    other = save_tiny(tmp_path / "wide", hidden=48)
    folder = make_peft_adapter(other, tmp_path / "lora", 2, 4.0)
    (tmp_path / "t.txt").write_text("text")
    assert_one_line_error(run("import", store, folder, "--id", "x", "--text-file", tmp_path / "t.txt"), 5,
                          "features")
    assert rows(store) == before


@pytest.mark.parametrize("metadata, words", [
    ("{oops", ("--metadata", "invalid JSON")),
    ('{"x": ' * 3000 + "1" + "}" * 3000, ("--metadata", "nested too deeply")),
    ("[1, 2]", ("--metadata", "expected a JSON object, got list")),
])
def test_import_with_bad_metadata_json_exits_2_and_adds_nothing(store, tmp_path, metadata, words):
    (tmp_path / "t.txt").write_text("text")
    before = rows(store)
    assert_one_line_error(run("import", store, tmp_path, "--id", "x", "--text-file", tmp_path / "t.txt",
                              "--metadata", metadata), 2, *words)
    assert rows(store) == before
