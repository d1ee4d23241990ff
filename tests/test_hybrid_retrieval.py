"""query(method=dense|bm25|hybrid) through the store, and both derived indexes kept exact by writes."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from paramdb import InvalidInput, ParamDB
from paramdb.cli import main

DOCS = [{"id": "cat", "text": "The cat Zorblax sat on the mat."},
        {"id": "paris", "text": "Paris is the capital of France."},
        {"id": "qcd", "text": "Quantum chromodynamics describes the strong interaction."}]


@pytest.fixture
def filled(db):
    db.insert(DOCS)
    return db


@pytest.mark.parametrize("method", ["dense", "bm25", "hybrid"])
def test_every_method_finds_the_document_naming_a_rare_term(filled, method):
    assert filled.query("Zorblax", k=1, method=method)[0].id == "cat"


def test_hybrid_is_the_default_method(filled):
    assert filled.query("Zorblax", k=3) == filled.query("Zorblax", k=3, method="hybrid")


def test_unknown_method_is_refused_naming_the_valid_ones(filled):
    with pytest.raises(InvalidInput, match="unknown retrieval method 'sparse'; valid: dense, bm25, hybrid"):
        filled.query("x", method="sparse")


def test_deleted_document_leaves_the_bm25_index(filled):
    filled.delete("cat")
    assert filled.query("Zorblax", k=3, method="bm25") == []


def test_upsert_replaces_the_terms_in_the_bm25_index(filled):
    filled.upsert({"id": "paris", "text": "Zorblax lives in Berlin."})
    assert filled.query("France", k=3, method="bm25") == []
    assert filled.query("Berlin", k=1, method="bm25")[0].id == "paris"


def test_bm25_respects_where_filters(filled):
    assert filled.query("Zorblax", k=1, method="bm25", where={"nothing": 1}) == []


def test_missing_bm25_file_is_rebuilt_on_open(filled, store_path, tiny_lm, embedder):
    filled.close()
    (store_path / "lexical.bm25").unlink()
    with ParamDB.open(store_path, model=tiny_lm, embedder=embedder) as again:
        assert again.query("Zorblax", k=1, method="bm25")[0].id == "cat"
    assert (store_path / "lexical.bm25").exists()


def test_cli_query_takes_a_method(filled, store_path):
    filled.close()
    r = CliRunner().invoke(main, ["query", str(store_path), "Zorblax", "--method", "bm25", "-k", "1"])
    assert r.exit_code == 0 and "cat" in r.output, r.output


def test_cli_unknown_method_is_a_one_line_error(filled, store_path):
    filled.close()
    r = CliRunner().invoke(main, ["query", str(store_path), "Zorblax", "--method", "nope"])
    assert r.exit_code == 2 and "unknown retrieval method 'nope'" in r.output and "Traceback" not in r.output
