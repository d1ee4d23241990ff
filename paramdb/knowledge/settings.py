"""Settings for augmentation and training: plain values, persisted in each store's config.

Kept free of torch so reading a store's configuration (and `paramdb --help`) stays instant.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields

from ..errors import InvalidInput


def check_number(name: str, value: object, low: float | None, *, above: bool = False,
                 integer: bool = False) -> None:
    """One rule for every numeric knob (settings here, the adapter weight at answer time): the declared type (a
    bool is not a number here), and finite and at least ``low`` (strictly above it with ``above``)."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise InvalidInput(f"{name} must be {'int' if integer else 'float'}, got {value!r}")
    if low is not None and (not math.isfinite(value) or value < low or (above and value == low)):
        raise InvalidInput(f"{name} must be a finite number {'>' if above else '>='} {low:g}, got {value!r}")


# How the base model's weights are held (knowledge/precision.py says what each means on which hardware).
PRECISIONS = ("auto", "fp32", "bf16")
ENV_VAR = "PARAMDB_PRECISION"


def check_precision(value: object, source: str = "precision") -> str:
    if value not in PRECISIONS:
        raise InvalidInput(f"unknown {source} {value!r}; valid: {', '.join(PRECISIONS)}")
    return value  # type: ignore[return-value]


def chosen(explicit: str | None = None, stored: str | None = None) -> str:
    """The precision that applies: ``explicit``, else the environment variable, else ``stored``, else auto."""
    if explicit is not None:
        return check_precision(explicit)
    env = os.environ.get(ENV_VAR)
    if env:
        return check_precision(env.strip().lower(), f"{ENV_VAR} value")
    return check_precision(stored or "auto", "store precision")


def _check(settings, what: str, minimum: dict[str, float], above: tuple[str, ...] = ()) -> None:
    """Refuse a value that would fail hours later inside training (or silently train nothing)."""
    for f in fields(settings):
        value, name = getattr(settings, f.name), f"{what} setting {f.name!r}"
        if f.type == "bool":
            if not isinstance(value, bool):
                raise InvalidInput(f"{name} must be bool, got {value!r}")
        else:
            check_number(name, value, minimum.get(f.name), above=f.name in above, integer=f.type == "int")


@dataclass(frozen=True)
class AugmentSettings:
    questions: bool = True          # LLM-written questions per sentence (else cloze prompts only)
    questions_per_sentence: int = 1 # up to one per question template (prompts.QUESTION_TEMPLATES)
    max_sentences: int = 12         # per document; long documents keep their first sentences
    max_question_tokens: int = 32
    batch_size: int = 16            # prompts per batched generation
    # Also train "question -> short answer" (a span of the sentence the LLM picks with its question) and ask
    # for short answers. False here so stores made before it keep what they were trained with; new stores
    # get config.NEW_STORE_AUGMENT.
    short_answers: bool = False
    # Train on the whole passage as one sample beside the question samples (PRAG does). It is the longest
    # sample of a document, so leaving it out saves the most tokens per epoch (docs/recipe.md measures both).
    passage_sample: bool = True

    def __post_init__(self) -> None:
        _check(self, "augment", {"questions_per_sentence": 1, "max_sentences": 1, "max_question_tokens": 1,
                                 "batch_size": 1})


@dataclass(frozen=True)
class TrainSettings:
    rank: int = 4
    alpha: float = 32.0
    lr: float = 5e-3
    epochs: int = 10
    samples_per_step: int = 4      # rows per document per optimizer step
    seed: int = 0
    max_length: int = 384          # tokens per sample, longer samples are cut
    max_batch_tokens: int = 2048   # padded tokens per forward/backward: bounds activation memory
                                   # (~1.2 MB/token on 135M)
    stop_loss: float = 0.0         # a document stops after an epoch whose mean training loss is below this (0: never)
    # The fraction of decoder layers, counted from the top, whose modules are trained. The others keep a zero
    # update and take no gradient, so the backward pass stops at the lowest trained layer: 0.5 halves it.
    layers: float = 1.0
    lr_final: float = 1.0          # the learning rate's multiplier in the last epoch, linear in between (1: constant)

    def __post_init__(self) -> None:
        _check(self, "training", {"rank": 1, "alpha": 0, "lr": 0, "epochs": 1, "samples_per_step": 1,
                                  "max_length": 1, "max_batch_tokens": 1, "stop_loss": 0, "layers": 0, "lr_final": 0},
               above=("alpha", "lr", "layers"))
        if self.layers > 1:
            raise InvalidInput(f"training setting 'layers' is the fraction of layers trained, at most 1, "
                               f"got {self.layers!r}")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank
