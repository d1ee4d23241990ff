"""Parameterizing on more than one machine. Importing this package never imports Ray: only
``ParamDB.insert(..., executor="ray")`` loads :mod:`paramdb.distributed.ray_executor`, which does.

The executor parameterizes on workers with the engine's ``parameterize`` and commits on this process with
the engine's ``commit_batch``; it returns the same :class:`paramdb.types.InsertReport` a local insert does.
"""
from __future__ import annotations

from ..types import InsertReport

__all__ = ["InsertReport"]
