"""`paramdb eval`: builds a store from a benchmark file's passages, scores each mode, resumes on rerun."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import FAST_TRAINING
from paramdb.cli import commands, main
from paramdb.knowledge import prompts
from paramdb.layout import Layout

ITEMS = [
    {"id": "q1", "question": "What is the capital of Freedonia?", "answers": ["Zorbel"],
     "passages": ["Zorbel is the capital of Freedonia."], "distractor_passages": ["Cats purr."]},
    {"id": "q2", "question": "What do dogs bark at?", "answers": ["the mailman", "mailman"],
     "passages": ["Dogs bark at the mailman.", "Zorbel is the capital of Freedonia."]},
]


@pytest.fixture(autouse=True)
def tiny_cli(monkeypatch, tiny_lm, embedder):
    real = commands.open_db

    def tiny(path, create=False, **kw):
        fresh = {"training": FAST_TRAINING} if not Layout(Path(path)).exists() else {}
        return real(path, create, **{**kw, "model": tiny_lm, "embedder": embedder, **fresh})
    monkeypatch.setattr(commands, "open_db", tiny)


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(it) + "\n" for it in ITEMS))
    return path


def _eval(data, tmp_path, *extra):
    return CliRunner().invoke(main, ["eval", str(data), "--store", str(tmp_path / "s"), "--modes", "closed,prag",
                                     "-k", "2", "--predictions", str(tmp_path / "p.jsonl"), "--json", *extra])


def test_eval_reports_each_mode_recall_and_writes_predictions(data, tmp_path):
    r = _eval(data, tmp_path)
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(result["modes"]) == {"closed", "prag"} and result["items"] == 2
    assert set(result["modes"]["prag"]) == {"em", "f1", "em_generation", "s_per_q", "settings"}
    settings = dict(result["modes"]["prag"]["settings"])
    assert len(settings.pop("prompt")) == 12
    assert settings == {"k": 2, "method": "hybrid", "merge": "rank", "adapter_weight": 1.0, "store_generation": 1,
                        "short": True}
    assert result["recall_at_k"] == 1.0          # two distinct gold passages in a store of two
    assert set(result["paired"]) == {"prag-closed"} and set(result["paired"]["prag-closed"]) == {"em", "f1"}
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert sorted((x["mode"], x["id"]) for x in rows) == [("closed", "q1"), ("closed", "q2"), ("prag", "q1"),
                                                          ("prag", "q2")]


def test_eval_rerun_reuses_the_store_and_asks_nothing_again(data, tmp_path):
    _eval(data, tmp_path)
    r = _eval(data, tmp_path)
    assert r.exit_code == 0 and "parameterize" not in r.stderr
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 4


def test_eval_rerun_with_another_adapter_weight_asks_the_adapter_modes_again(data, tmp_path):
    _eval(data, tmp_path)
    r = _eval(data, tmp_path, "--adapter-weight", "0.25")
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert sorted((x["mode"], x["settings"].get("adapter_weight")) for x in rows) == \
        [("closed", None)] * 2 + [("prag", 0.25)] * 2 + [("prag", 1.0)] * 2
    assert json.loads(r.stdout.strip().splitlines()[-1])["modes"]["prag"]["settings"]["adapter_weight"] == 0.25


def test_eval_rerun_with_full_answers_asks_every_mode_again_and_scores_the_whole_generation(data, tmp_path):
    _eval(data, tmp_path)
    r = _eval(data, tmp_path, "--full")
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert sorted(x["settings"]["short"] for x in rows) == [False] * 4 + [True] * 4
    assert all(x["prediction"] == x["generation"] for x in rows if not x["settings"]["short"])


def test_eval_rerun_with_other_prompt_words_asks_again_only_the_modes_asked_with_them(data, tmp_path, monkeypatch):
    _eval(data, tmp_path)
    monkeypatch.setattr(prompts, "SHORT_CLOSED_SYSTEM", "Answer in one or two words.")   # closed asks with it
    r = _eval(data, tmp_path)
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert sorted(x["mode"] for x in rows) == ["closed"] * 4 + ["prag"] * 2
    assert len({x["settings"]["prompt"] for x in rows if x["mode"] == "closed"}) == 2


def test_eval_rerun_on_a_changed_store_asks_the_retrieval_modes_again(data, tmp_path):
    assert _eval(data, tmp_path, "--limit", "1").exit_code == 0      # a store of q1's passage only
    r = _eval(data, tmp_path)                                         # adds q2's passage: q1 could retrieve it
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert sorted((x["mode"], x["id"]) for x in rows) == [("closed", "q1"), ("closed", "q2"), ("prag", "q1"),
                                                          ("prag", "q1"), ("prag", "q2")]
    assert json.loads(r.stdout.strip().splitlines()[-1])["modes"]["prag"]["settings"]["store_generation"] == 2


def test_eval_with_distractors_adds_their_passages(data, tmp_path):
    r = _eval(data, tmp_path, "--distractors")
    assert r.exit_code == 0 and "3 passages to parameterize" in r.stderr


def test_eval_malformed_data_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(ITEMS[0]) + "\n{not json\n")
    r = _eval(bad, tmp_path)
    assert r.exit_code != 0 and f"{bad}:2" in r.stderr and "Traceback" not in r.output
    assert not (tmp_path / "p.jsonl").exists()


def test_eval_unknown_mode_lists_the_valid_ones(data, tmp_path):
    r = CliRunner().invoke(main, ["eval", str(data), "--store", str(tmp_path / "s"), "--modes", "prag,magic"])
    assert r.exit_code == 2 and "valid modes: prag, icl, combine, closed" in r.stderr
