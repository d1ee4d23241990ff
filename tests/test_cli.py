"""The `paramdb` command line: each command's output, and how errors reach the user.

Stores are made in Python with the tiny random Llama; the CLI's `open_db` is patched to hand it the same
tiny model and embedder (the store's own config names a model that exists only in memory).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from paramdb import ParamDB
from paramdb.cli import commands, main
from paramdb.config import MODES

CLI_TRAINING = {"epochs": 1, "rank": 2, "alpha": 4.0}
DOCS = [
    {"id": "sky", "text": "The sky over Veltria is violet at noon.", "metadata": {"topic": "sky", "year": 2020}},
    {"id": "grass", "text": "Grass in Veltria grows blue in spring.", "metadata": {"topic": "plants", "year": 2022}},
    {"id": "river", "text": "The river Oskel flows north into the Sea of Tam.",
     "metadata": {"topic": "water", "year": 2024}},
]
IDS = [d["id"] for d in DOCS]


@pytest.fixture(scope="session")
def template_store(tmp_path_factory, tiny_lm, embedder):
    path = tmp_path_factory.mktemp("cli-template") / "store"
    with ParamDB.open(path, create=True, model=tiny_lm, embedder=embedder, training=CLI_TRAINING) as db:
        db.insert(DOCS)
    return path


@pytest.fixture
def store(template_store, tmp_path):
    """A fresh copy of a closed store holding DOCS (copying is much faster than training)."""
    path = tmp_path / "store"
    shutil.copytree(template_store, path)
    return str(path)


@pytest.fixture(autouse=True)
def opened(monkeypatch, tiny_lm, embedder):
    """Make the CLI open stores with the tiny model; returns the keyword arguments of each open."""
    calls = []
    real = commands.open_db

    def fake(path, create=False, **kwargs):
        calls.append({"create": create, **kwargs})
        return real(path, create, **{**kwargs, "model": tiny_lm, "embedder": embedder})

    monkeypatch.setattr(commands, "open_db", fake)
    return calls


def run(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def stored_ids(path) -> list[str]:
    with ParamDB.open(path) as db:
        return [d.id for d in db.list()]


def assert_error(result, code: int, *fragments: str) -> str:
    """One `error: ...` line on stderr naming every fragment, the exit code, no traceback."""
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.output
    return lines[0]


# ------------------------------------------------------------------------------------------ init
def test_init_creates_a_store_with_training_overrides(tmp_path, opened):
    path = tmp_path / "new"
    result = run("init", path, "--epochs", 1, "--rank", 2, "--lr", 0.01, "--stop-loss", 0)
    assert result.exit_code == 0, result.output
    assert "created store" in result.stdout
    assert opened[-1]["create"] and opened[-1]["training"] == {"epochs": 1, "rank": 2, "lr": 0.01, "stop_loss": 0}
    assert stored_ids(path) == []


def test_init_short_answers_creates_a_store_that_trains_and_asks_for_short_answers(tmp_path, opened):
    result = run("init", tmp_path / "new", "--short-answers")
    assert result.exit_code == 0, result.output
    assert opened[-1]["augment"] == {"short_answers": True}
    assert run("init", tmp_path / "plain").exit_code == 0 and opened[-1]["augment"] is None


def test_init_cheaper_recipe_trains_the_top_layers_without_the_passage_sample(tmp_path, opened):
    result = run("init", tmp_path / "new", "--layers", 0.5, "--no-passage-sample")
    assert result.exit_code == 0, result.output
    assert opened[-1]["training"] == {"layers": 0.5} and opened[-1]["augment"] == {"passage_sample": False}


@pytest.mark.parametrize("layers", ["0", "1.5"])
def test_init_refuses_a_layer_fraction_outside_0_to_1(tmp_path, layers):
    result = run("init", tmp_path / "new", "--layers", layers)
    assert result.exit_code == 2 and "--layers" in result.output
    assert not (tmp_path / "new").exists()


def test_init_refuses_a_negative_stop_loss_and_creates_nothing(tmp_path):
    result = run("init", tmp_path / "new", "--stop-loss", -0.1)
    assert result.exit_code == 2 and "--stop-loss" in result.output
    assert not (tmp_path / "new").exists()


def test_init_refuses_an_existing_store(store):
    assert_error(run("init", store), 4, "already exists", store)
    assert stored_ids(store) == IDS


def test_init_with_an_unreachable_meta_url_exits_9_and_leaves_no_folder(tmp_path):
    url = f"sqlite:///{tmp_path / 'gone' / 'meta.sqlite'}"
    assert_error(run("init", tmp_path / "new", "--meta-url", url), 9, "cannot connect", "gone/meta.sqlite")
    assert not (tmp_path / "new").exists()


def test_init_on_a_meta_url_holding_another_store_exits_4_and_keeps_that_store(store, tmp_path):
    url = f"sqlite:///{Path(store).resolve() / 'meta.sqlite'}"
    assert_error(run("init", tmp_path / "new", "--meta-url", url), 4, "already holds")
    assert stored_ids(store) == IDS and not (tmp_path / "new").exists()


# ------------------------------------------------------------------------------------------ reading
def test_query_prints_rank_score_id_and_text(store):
    result = run("query", store, "What colour is the sky over Veltria?", "-k", 2)
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2
    rank, score, doc_id, *text = lines[0].split()
    assert rank == "1" and float(score) and doc_id in IDS and text


def test_query_json_lists_hits(store):
    result = run("query", store, "sky", "-k", 3, "--json")
    hits = json.loads(result.stdout)
    assert [set(h) for h in hits] == [{"id", "score", "text", "metadata", "adapter"}] * 3
    assert sorted(h["id"] for h in hits) == sorted(IDS)
    assert {h["adapter"] for h in hits} == {"trained"}


def test_query_where_filters_by_metadata(store):
    result = run("query", store, "sky", "--where", "topic=water", "--json")
    assert [h["id"] for h in json.loads(result.stdout)] == ["river"]


def test_query_where_values_parse_as_json_and_repeats_are_anded(store):
    result = run("query", store, "sky", "--where", "year=2022", "--where", "topic=plants", "--json")
    assert [h["id"] for h in json.loads(result.stdout)] == ["grass"]


def test_query_where_json_takes_operators(store):
    result = run("query", store, "sky", "--where-json", '{"year": {"$gte": 2022}}', "--json")
    assert sorted(h["id"] for h in json.loads(result.stdout)) == ["grass", "river"]


def test_get_prints_the_document(store):
    result = run("get", store, "sky")
    assert result.exit_code == 0
    assert "id: sky" in result.stdout and DOCS[0]["text"] in result.stdout


def test_get_json(store):
    assert json.loads(run("get", store, "sky", "--json").stdout) == {**DOCS[0], "adapter": "trained"}


def test_ls_lists_ids_in_order(store):
    result = run("ls", store)
    assert [line.split()[0] for line in result.stdout.splitlines()] == IDS


def test_ls_json_with_limit_offset_and_where(store):
    assert json.loads(run("ls", store, "--json").stdout) == [{**d, "adapter": "trained"} for d in DOCS]
    assert [d["id"] for d in json.loads(run("ls", store, "--limit", 1, "--offset", 1, "--json").stdout)] == ["grass"]
    assert [d["id"] for d in json.loads(run("ls", store, "--where", "year=2020", "--json").stdout)] == ["sky"]


def test_stats_human(store):
    result = run("stats", store)
    assert result.exit_code == 0
    assert "documents: 3" in result.stdout and "base_model: tiny-llama" in result.stdout


def test_stats_json(store):
    info = json.loads(run("stats", store, "--json").stdout)
    assert info["documents"] == 3 and info["base_model"] == "tiny-llama"
    assert info["lora"]["rank"] == 2 and info["bytes"]["total"] > 0


# ------------------------------------------------------------------------------------------ generate
@pytest.mark.parametrize("mode", MODES)
def test_generate_prints_an_answer_in_each_mode(store, mode):
    result = run("generate", store, "What colour is the sky?", "--mode", mode, "-k", 2, "--max-new-tokens", 4)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip()


def test_generate_json_shape(store):
    result = run("generate", store, "What colour is the sky?", "-k", 2, "--max-new-tokens", 4, "--json")
    out = json.loads(result.stdout)
    assert set(out) == {"answer", "generation", "mode", "hits", "timings", "notes"}
    assert out["mode"] == "prag" and isinstance(out["answer"], str)
    assert len(out["hits"]) == 2 and set(out["hits"][0]) == {"id", "score", "text", "metadata", "adapter"}
    assert set(out["timings"]) == {"retrieve", "load_adapters", "generate", "shorten"}


def test_generate_passes_device_to_open(store, opened):
    run("generate", store, "Why?", "--mode", "closed", "--max-new-tokens", 2, "--device", "cpu")
    assert opened[-1]["device"] == "cpu"


def test_generate_unknown_mode_lists_valid_modes(store):
    assert_error(run("generate", store, "Why?", "--mode", "telepathy"), 2, "telepathy", *MODES)


def test_generate_needs_exactly_one_of_question_and_questions(store, tmp_path):
    assert run("generate", store).exit_code == 2
    qfile = tmp_path / "q.jsonl"
    qfile.write_text('{"question": "Why?"}\n')
    assert run("generate", store, "Why?", "--questions", qfile).exit_code == 2


# ------------------------------------------------------------------------------------------ delete
def test_delete_removes_documents(store):
    result = run("delete", store, "sky", "river")
    assert result.exit_code == 0 and "deleted 2" in result.stdout
    assert stored_ids(store) == ["grass"]


def test_delete_unknown_id_names_it_and_deletes_nothing(store):
    assert_error(run("delete", store, "sky", "nope"), 3, "'nope'")
    assert stored_ids(store) == IDS


# ------------------------------------------------------------------------------------------ errors
def test_get_unknown_id_names_it(store):
    assert_error(run("get", store, "nope"), 3, "unknown id 'nope'")


def test_missing_store_says_there_is_no_store_at_that_path(tmp_path):
    missing = tmp_path / "nowhere"
    for args in (["ls", missing], ["query", missing, "sky"], ["stats", missing]):
        assert_error(run(*args), 4, f"no store at {missing}")
    assert not missing.exists()


@pytest.mark.parametrize("args, fragment", [
    (["--where", "topic"], "KEY=VALUE"),
    (["--where", "=sky"], "KEY=VALUE"),
    (["--where-json", "{topic: 1}"], "invalid JSON"),
    (["--where-json", "[1]"], "JSON object"),
    (["--where-json", '{"year": {"$near": 1}}'], "$near"),
])
def test_bad_where_is_a_one_line_error(store, args, fragment):
    assert_error(run("ls", store, *args), 2, fragment)


def test_click_usage_errors_keep_exit_2(store):
    result = run("query", store, "sky", "-k", 0)
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_debug_shows_the_traceback(tmp_path):
    result = run("--debug", "ls", tmp_path / "nowhere")
    assert result.exit_code == 4
    assert "Traceback" in result.stderr and "StoreNotFound" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: no store at")


def test_unexpected_exception_is_an_internal_error_exit_70(store, monkeypatch):
    def boom(self, *a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(ParamDB, "stats", boom)
    line = assert_error(run("stats", store), 70, "internal error: RuntimeError: boom", "--debug")
    assert line.startswith("error: internal error")


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and "paramdb" in result.stdout
