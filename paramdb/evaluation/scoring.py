"""Scoring answers as PRAG and SQuAD do, and comparing two runs item by item.

Answers are compared after :func:`normalize_answer`; a prediction is correct (EM-in-output) when it contains any
alias on word boundaries, and token F1 is taken against the best alias.
"""
from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Iterable

from paramdb.errors import InvalidInput

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_ASCII_PUNCT = frozenset(string.punctuation)


def _is_punct(ch: str) -> bool:
    return ch in _ASCII_PUNCT or unicodedata.category(ch).startswith("P")


def normalize_answer(s: str) -> str:
    """SQuAD normalisation: lower case, drop punctuation (ASCII and Unicode), drop articles, collapse
    whitespace. Text is NFKC-normalised first so composed and decomposed letters compare equal."""
    s = unicodedata.normalize("NFKC", s).lower()
    s = "".join(ch for ch in s if not _is_punct(ch))
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def _aliases(aliases: str | Iterable[str]) -> list[str]:
    """Normalised, non-empty aliases (one that normalises to nothing, e.g. "The", can never match)."""
    if isinstance(aliases, str):
        aliases = [aliases]
    return [a for a in (normalize_answer(x) for x in aliases) if a]


def em_in_output(prediction: str, aliases: str | Iterable[str]) -> bool:
    """True when some normalised alias occurs in the normalised prediction as whole words."""
    padded = f" {normalize_answer(prediction)} "
    return any(f" {a} " in padded for a in _aliases(aliases))


def token_f1(prediction: str, aliases: str | Iterable[str]) -> float:
    """SQuAD token F1 of the prediction against its best alias (0.0 with no usable alias)."""
    pred = normalize_answer(prediction).split()
    best = 0.0
    for alias in _aliases(aliases):
        gold = alias.split()
        same = sum((Counter(pred) & Counter(gold)).values())
        if same:
            p, r = same / len(pred), same / len(gold)
            best = max(best, 2 * p * r / (p + r))
    return best


def score(prediction: str, aliases: str | Iterable[str]) -> dict[str, float]:
    """{"em": 0.0 or 1.0, "f1": ...}: both metrics for one prediction."""
    return {"em": float(em_in_output(prediction, aliases)), "f1": token_f1(prediction, aliases)}


# ---------------------------------------------------------------------------------------------- data


def recall_at_k(retrieved_ids: Iterable[str], gold: set[str]) -> float:
    """Fraction of the gold passages found among ``retrieved_ids``."""
    gold = set(gold)
    if not gold:
        raise InvalidInput("recall needs at least one gold passage")
    return len(gold.intersection(retrieved_ids)) / len(gold)


def paired_bootstrap(a: Iterable[float], b: Iterable[float], n: int = 2000, seed: int = 0) -> dict:
    """Mean of a - b over the same items, with a 95% paired bootstrap interval: two modes scored on the same
    questions differ by less than their separate intervals suggest, and by more on a few hard items."""
    import random

    d = [x - y for x, y in zip(a, b, strict=True)]
    if not d:
        raise InvalidInput("a paired comparison needs at least one item")
    rng = random.Random(seed)
    means = sorted(sum(d[rng.randrange(len(d))] for _ in d) / len(d) for _ in range(n))
    return {"diff": round(sum(d) / len(d), 4),
            "ci95": [round(means[int(0.025 * n)], 4), round(means[min(n - 1, int(0.975 * n))], 4)]}
