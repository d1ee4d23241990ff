"""The ``paramdb`` command line: a thin layer over :class:`paramdb.ParamDB`."""
from __future__ import annotations

import click

from paramdb import __version__

from .commands import ALL
from .eval_command import eval_
from .errors import ParamDBGroup
from .interop_commands import INTEROP
from .ops_commands import ALL as OPS
from .serve_command import serve
from .store_commands import STORE_COMMANDS
from .translator_commands import TRANSLATOR_COMMANDS


@click.group(cls=ParamDBGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(__version__, prog_name="paramdb")
def main(debug: bool) -> None:
    """ParamDB: an embedded database for Parametric RAG, each document stored with its own LoRA adapter."""


for _command in [*ALL, eval_, *STORE_COMMANDS, *OPS, *INTEROP, *TRANSLATOR_COMMANDS, serve]:
    main.add_command(_command)
