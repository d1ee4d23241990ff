"""`paramdb distill`, `insert --translate` and `refine` from the command line, and their errors."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from paramdb import ParamDB
from paramdb.cli import commands, main

DOCS = [{"id": f"d{i}", "text": f"Person {i} lives in town {t}. Person {i} bakes bread there."}
        for i, t in enumerate(["Ebberlin", "Dromesh", "Tarrow", "Kellam", "Ostvane"])]


@pytest.fixture(autouse=True)
def tiny(monkeypatch, tiny_lm, embedder):
    real = commands.open_db
    monkeypatch.setattr(commands, "open_db", lambda path, create=False, **kw:
                        real(path, create, **{**kw, "model": tiny_lm, "embedder": embedder}))


@pytest.fixture
def store(tmp_path, tiny_lm, embedder):
    path = tmp_path / "store"
    with ParamDB.open(path, create=True, model=tiny_lm, embedder=embedder,
                      training={"epochs": 1, "rank": 2, "alpha": 4.0}) as db:
        db.insert(DOCS[:4])
    return str(path)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def new_docs(tmp_path, docs=DOCS[4:]):
    f = tmp_path / "new.jsonl"
    f.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return f


def test_insert_translate_without_a_translator_exits_12_in_one_line_and_adds_nothing(store, tmp_path):
    r = run("insert", store, new_docs(tmp_path), "--translate")
    assert r.exit_code == 13
    assert r.output.strip().splitlines() == [f"error: store {store} has no translator; make one with "
                                             f"`paramdb distill {store}` (or --from FILE.jsonl for a new store)"]
    assert json.loads(run("stats", store, "--json").output)["documents"] == 4


def test_distill_then_translated_insert_shows_the_adapter_kind(store, tmp_path):
    r = run("distill", store, "--epochs", "1", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output.strip().splitlines()[-1])["docs"] == 4
    assert run("insert", store, new_docs(tmp_path), "--translate").exit_code == 0
    assert "adapter: translated" in run("get", store, "d4").output
    assert json.loads(run("get", store, "d0", "--json").output)["adapter"] == "trained"
    assert "d4  translated" in run("ls", store).output
    stats = json.loads(run("stats", store, "--json").output)
    assert stats["adapters"] == {"trained": 4, "translated": 1, "imported": 0, "pending": 0}
    assert stats["translator"]["learned_from"]["count"] == 4


def test_distill_on_an_empty_store_exits_2_in_one_line(tmp_path, tiny_lm, embedder):
    path = tmp_path / "empty"
    ParamDB.open(path, create=True, model=tiny_lm, embedder=embedder).close()
    r = run("distill", path)
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1
    assert "no documents to learn from" in r.output and "--from FILE.jsonl" in r.output


def test_distill_from_a_file_then_refine_trains_what_was_translated(store, tmp_path):
    src = tmp_path / "learn.jsonl"
    src.write_text("".join(json.dumps({"text": d["text"]}) + "\n" for d in DOCS[:3]))
    assert run("distill", store, "--from", src, "--epochs", "1").exit_code == 0
    assert run("insert", store, new_docs(tmp_path), "--translate").exit_code == 0
    r = run("refine", store, "--json")
    assert r.exit_code == 0, r.output
    got = json.loads(r.output.strip().splitlines()[-1])
    assert {k: got[k] for k in ("refined", "skipped", "remaining")} == {"refined": 1, "skipped": [], "remaining": 0}
    assert json.loads(run("stats", store, "--json").output)["adapters"] == \
        {"trained": 5, "translated": 0, "imported": 0, "pending": 0}


def test_distill_setting_shapes_the_stored_translator(store):
    assert run("distill", store, "--epochs", "1", "--setting", "lexical=2", "--setting", "layers=1").exit_code == 0
    settings = json.loads(run("stats", store, "--json").output)["translator"]["settings"]
    assert settings["lexical"] == 2 and settings["layers"] == [1]


@pytest.mark.parametrize("setting, message", [
    ("lexical", "expected KEY=VALUE"),
    ("lexical=many", "lexical takes an integer"),
    ("colour=blue", "unknown translator setting 'colour'"),
    ("lexical=-1", "lexical must be 0 or more"),
])
def test_a_bad_distill_setting_exits_2_in_one_line_and_stores_no_translator(store, setting, message):
    r = run("distill", store, "--epochs", "1", "--setting", setting)
    assert r.exit_code == 2 and message in r.output.strip().splitlines()[-1]
    assert json.loads(run("stats", store, "--json").output)["translator"] is None
