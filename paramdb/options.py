"""How a question is retrieved for and answered: one typed value for ``query``, ``generate``, ``generate_batch``,
the CLI's shared options and the server's request fields, so each knob is defined, defaulted and checked once.

``db.generate(q, k=1, mode="icl")`` builds one from keywords; ``db.generate_batch(qs, opts)`` takes one made
earlier, and ``db.generate(q, opts, short=False)`` replaces fields of it. An unknown field is an InvalidInput
naming it, like any other bad argument.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from . import validate
from .config import DEFAULT_MERGE, adapter_weight_for
from .errors import InvalidInput
from .retrieval import check_method

RETRIEVAL_FIELDS = ("k", "where", "method")


@dataclass(frozen=True)
class AnswerOptions:
    """``k`` documents retrieved by ``method`` (dense, bm25, hybrid) among rows matching ``where``; ``mode``
    (prag, icl, combine, closed) says whether their adapters, their passages or both are used; ``merge``
    (rank, mean, sum) weighs the k adapters and ``adapter_weight`` scales them (None: the mode's default,
    config.ADAPTER_WEIGHTS); ``short`` answers with the span of the generation that answers the question;
    ``max_new_tokens`` bounds the generation. Why each default is what it is: docs/recipe.md."""

    k: int = 3
    mode: str = "prag"
    where: dict | None = None
    method: str = "hybrid"
    merge: str = DEFAULT_MERGE
    adapter_weight: float | None = None
    short: bool = True
    max_new_tokens: int = 48

    def __post_init__(self) -> None:
        validate.positive_int(self.k, "k")
        validate.mode(self.mode)
        check_method(self.method)
        validate.merge(self.merge)
        adapter_weight_for(self.mode, self.adapter_weight)
        validate.flag(self.short, "short")
        validate.positive_int(self.max_new_tokens, "max_new_tokens")
        if self.where is not None and not isinstance(self.where, dict):
            raise InvalidInput(f"where must be a dict, got {type(self.where).__name__}")

    @property
    def weight(self) -> float:
        """The merged adapters' scale in this mode (``adapter_weight`` or the mode's default)."""
        return adapter_weight_for(self.mode, self.adapter_weight)

    def kwargs(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = tuple(f.name for f in dataclasses.fields(AnswerOptions))


def answer_options(options: AnswerOptions | None, fields: dict[str, Any],
                   allowed: tuple[str, ...] = FIELDS) -> AnswerOptions:
    """``options`` (default: AnswerOptions()) with ``fields`` replaced; a field outside ``allowed`` is refused."""
    if options is not None and not isinstance(options, AnswerOptions):
        raise InvalidInput(f"options must be an AnswerOptions, got {type(options).__name__} {options!r}")
    unknown = sorted(set(fields) - set(allowed))
    if unknown:
        raise InvalidInput(f"unknown option {unknown[0]!r}; valid: {', '.join(allowed)}")
    return dataclasses.replace(options or AnswerOptions(), **fields)
