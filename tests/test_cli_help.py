"""Every command's --help ends its description with examples, kept line for line, that the command parses."""
from __future__ import annotations

import shlex

import click
import pytest
from click.testing import CliRunner

from paramdb.cli import main


def examples(name: str) -> list[str]:
    out = CliRunner().invoke(main, [name, "--help"])
    assert out.exit_code == 0, out.output
    assert "Examples:" in out.output, f"`paramdb {name} --help` has no Examples block"
    block = out.output.split("Examples:", 1)[1].split("\n\n", 1)[0]
    return [line.strip() for line in block.splitlines() if line.strip()]


@pytest.mark.parametrize("name", sorted(main.commands))
def test_help_shows_examples_one_per_line(name):
    lines = examples(name)
    assert lines and all(f"paramdb {name} " in line for line in lines), lines


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_example_uses_only_options_the_command_has(name):
    cmd = main.commands[name]
    for line in examples(name):
        args = shlex.split(line.rsplit("| ", 1)[-1])[2:]     # after "paramdb NAME", past any pipe
        try:     # closed at once: a context's close undoes what its options' callbacks set (--precision)
            with cmd.make_context(name, args, parent=click.Context(main, info_name="paramdb")):
                pass
        except click.BadParameter as exc:                     # a file the example names need not exist here
            assert "does not exist" in str(exc), f"{line}: {exc}"
