"""`--precision` on the command line: recorded by `init`, obeyed by every command that loads the model."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from paramdb import ParamDB
from paramdb.cli import commands, main
from paramdb.knowledge.precision import ENV_VAR


@pytest.fixture(autouse=True)
def tiny_cli(monkeypatch, tiny_lm, embedder):
    """The CLI opens stores with the tiny model; the variable the flag sets is put back after each test."""
    monkeypatch.setenv(ENV_VAR, "auto")
    real = commands.open_db
    monkeypatch.setattr(commands, "open_db", lambda path, create=False, **kw: real(
        path, create, **{**kw, "model": tiny_lm, "embedder": embedder}))


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_init_records_the_precision_as_the_stores_setting(tmp_path, tiny_lm, embedder):
    result = run("init", tmp_path / "s", "--precision", "bf16", "--epochs", "1")
    assert result.exit_code == 0, result.output
    with ParamDB.open(tmp_path / "s", model=tiny_lm, embedder=embedder) as db:
        assert db.config.precision == "bf16"


def test_an_unknown_precision_is_a_one_line_error_and_creates_nothing(tmp_path):
    result = run("init", tmp_path / "s", "--precision", "fp8")
    assert result.exit_code != 0
    assert result.output.strip() == "error: unknown precision 'fp8'; valid: auto, fp32, bf16"
    assert not (tmp_path / "s").exists()


def test_the_flag_beats_the_environment_for_the_command_it_runs(tmp_path, monkeypatch):
    seen = []
    opened = commands.open_db
    monkeypatch.setattr(commands, "open_db", lambda *a, **kw: seen.append(opened(*a, **kw)) or seen[-1])
    assert run("init", tmp_path / "s", "--epochs", "1").exit_code == 0
    monkeypatch.setenv(ENV_VAR, "bf16")
    result = run("generate", tmp_path / "s", "anything?", "--mode", "closed", "--precision", "fp32")
    assert result.exit_code == 0, result.output
    assert seen[-1]._models.precision == "fp32"


def test_the_flag_does_not_outlive_its_command(tmp_path, monkeypatch):
    import os

    monkeypatch.setenv(ENV_VAR, "bf16")
    assert run("init", tmp_path / "s", "--epochs", "1", "--precision", "fp32").exit_code == 0
    assert os.environ[ENV_VAR] == "bf16"
    monkeypatch.delenv(ENV_VAR)
    assert run("init", tmp_path / "t", "--epochs", "1", "--precision", "fp32").exit_code == 0
    assert ENV_VAR not in os.environ
