"""Retrieval methods and their fusion: dense (embeddings), bm25 (lexical) and hybrid (reciprocal rank fusion).

Rankings are lists of (label, score) best first, as VectorIndex.search and LexicalIndex.search return them.
Hybrid asks each index for ``CANDIDATES(k)`` results and fuses them with RRF (Cormack et al., 2009):
score(d) = sum over rankings of 1 / (c + rank of d), ranks from 1. The fused score replaces the original
ones, which are not comparable across rankers.
"""
from __future__ import annotations

from collections.abc import Callable

from paramdb.errors import InvalidInput

METHODS = ("dense", "bm25", "hybrid")
DEFAULT_METHOD = "hybrid"
RRF_C = 60

Ranking = list[tuple[int, float]]


def CANDIDATES(k: int) -> int:  # noqa: N802 (a constant of k)
    """How many results hybrid takes from each index before fusing down to k."""
    return max(int(k) * 4, 20)


def check_method(method: object) -> str:
    """``method`` if it is one of METHODS, else InvalidInput naming the valid ones."""
    if method not in METHODS:
        raise InvalidInput(f"unknown retrieval method {method!r}; valid: {', '.join(METHODS)}")
    return method  # type: ignore[return-value]


def rrf(rankings: list[Ranking], k: int, c: int = RRF_C) -> Ranking:
    """Reciprocal rank fusion of ``rankings`` (each best first) into the top ``k`` (label, fused score).

    A label repeated inside one ranking counts at its best rank only. Ties go to the label with the best
    single rank in any ranking, then to the smaller label, so the result is deterministic.
    """
    if k <= 0:
        return []
    score: dict[int, float] = {}
    best: dict[int, int] = {}
    for ranking in rankings:
        seen: set[int] = set()
        for rank, (label, _) in enumerate(ranking, 1):
            label = int(label)
            if label in seen:
                continue
            seen.add(label)
            score[label] = score.get(label, 0.0) + 1.0 / (c + rank)
            best[label] = min(best.get(label, rank), rank)
    order = sorted(score, key=lambda lab: (-score[lab], best[lab], lab))
    return [(lab, score[lab]) for lab in order[:k]]


def retrieve(method: str, k: int, dense: Callable[[int], Ranking], bm25: Callable[[int], Ranking]) -> Ranking:
    """The top k by ``method``; ``dense(n)`` and ``bm25(n)`` each return that index's top n.

    Only the index(es) the method needs are asked, so a bm25 query never embeds and a dense one never
    touches the lexical index.
    """
    method = check_method(method)
    if method == "dense":
        return dense(k)[:k]
    if method == "bm25":
        return bm25(k)[:k]
    n = CANDIDATES(k)
    return rrf([dense(n), bm25(n)], k)
