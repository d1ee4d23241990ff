"""Deferred insert end to end on the real default model, through the `paramdb` command: `insert --defer`,
`generate --mode prag` answers from the passages (the notes say so), `refine`, then the same questions are
answered from the trained adapters. Facts are invented: the base model cannot know them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_real_model import DOCS, QUESTIONS

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def cli(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([str(Path(sys.executable).with_name("paramdb")), *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=1800)


def _answers(store, questions) -> list[dict]:
    r = cli("generate", store, "--questions", questions, "--mode", "prag", "-k", "1")
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_a_deferred_row_is_answered_from_its_passage_then_from_its_adapter_after_refine(tmp_path):
    store, docs, questions = tmp_path / "store", tmp_path / "docs.jsonl", tmp_path / "q.jsonl"
    docs.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    questions.write_text("".join(json.dumps({"id": n, "question": q}) + "\n" for n, (q, _) in enumerate(QUESTIONS)))
    assert cli("init", store).returncode == 0
    r = cli("insert", store, docs, "--defer")
    assert r.returncode == 0, r.stderr
    assert json.loads(cli("stats", store, "--json").stdout)["adapters"]["pending"] == len(DOCS)

    before = _answers(store, questions)
    assert all(a["hits"][0]["adapter"] == "pending" for a in before)
    assert all(any("not yet parameterized" in n for n in a["notes"]) for a in before)
    from_passage = [gold in a["answer"].lower() for a, (_, gold) in zip(before, QUESTIONS)]
    assert sum(from_passage) >= 3, [a["answer"] for a in before]

    r = cli("refine", store, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1])["refined"] == len(DOCS)

    after = _answers(store, questions)
    assert all(a["hits"][0]["adapter"] == "trained" for a in after)
    assert not any("not yet parameterized" in n for a in after for n in a["notes"])
    from_adapter = [gold in a["answer"].lower() for a, (_, gold) in zip(after, QUESTIONS)]
    assert sum(from_adapter) >= 2, [a["answer"] for a in after]
