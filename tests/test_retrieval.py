"""Reciprocal rank fusion, the method check and the dispatch helper."""
from __future__ import annotations

import pytest

from paramdb.errors import InvalidInput
from paramdb.retrieval import CANDIDATES, METHODS, check_method, retrieve, rrf


def test_rrf_math_on_a_hand_example():
    dense = [(1, 0.9), (2, 0.8), (3, 0.7)]
    bm25 = [(3, 12.0), (4, 9.0), (1, 1.0)]
    fused = rrf([dense, bm25], k=10, c=60)
    want = {1: 1 / 61 + 1 / 63, 2: 1 / 62, 3: 1 / 63 + 1 / 61, 4: 1 / 62}
    assert {lab: pytest.approx(s) for lab, s in fused} == want
    # 1 and 3 tie on score and on best single rank (1): the smaller label wins; likewise 2 and 4 (rank 2)
    assert [lab for lab, _ in fused] == [1, 3, 2, 4]
    assert [lab for lab, _ in rrf([dense, bm25], k=2)] == [1, 3]


def test_found_by_both_beats_found_by_one():
    dense = [(10, 1.0), (11, 0.5), (12, 0.4)]
    bm25 = [(20, 9.0), (21, 8.0), (12, 1.0)]
    assert rrf([dense, bm25], k=1)[0][0] == 12


def test_ties_prefer_best_single_rank_then_label():
    a = [(9, 0.0), (5, 0.0)]   # 5 at rank 2
    b = [(6, 0.0), (8, 0.0)]   # 6 at rank 1
    assert [lab for lab, _ in rrf([a, b], k=4)] == [6, 9, 5, 8]  # equal pairs: smaller label first
    # with c=0 label 50 (rank 2 once: 1/2) ties 10 (ranks 3 and 6: 1/3 + 1/6) and 3 (rank 2: 1/2) exactly
    a = [(1, 0.0), (50, 0.0), (10, 0.0)]
    b = [(2, 0.0), (3, 0.0), (4, 0.0), (5, 0.0), (6, 0.0), (10, 0.0)]
    fused = rrf([a, b], k=10, c=0)
    assert dict(fused)[50] == dict(fused)[10] == dict(fused)[3] == 0.5
    assert [lab for lab, _ in fused] == [1, 2, 3, 50, 10, 4, 5, 6]  # best single rank beats smaller label


def test_rrf_edge_cases():
    assert rrf([], k=3) == [] and rrf([[], []], k=3) == [] and rrf([[(1, 0.0)]], k=0) == []
    assert rrf([[(1, 0.0), (1, 0.0)]], k=3) == [(1, pytest.approx(1 / 61))]  # a repeat counts once


def test_check_method():
    for m in METHODS:
        assert check_method(m) == m
    with pytest.raises(InvalidInput) as e:
        check_method("x")
    assert str(e.value) == "unknown retrieval method 'x'; valid: dense, bm25, hybrid"


def test_retrieve_asks_only_the_needed_indexes():
    asked = []

    def dense(n):
        asked.append(("dense", n))
        return [(1, 0.9), (2, 0.5)]

    def bm25(n):
        asked.append(("bm25", n))
        return [(2, 3.0), (3, 1.0)]

    assert retrieve("dense", 2, dense, bm25) == [(1, 0.9), (2, 0.5)] and asked == [("dense", 2)]
    asked.clear()
    assert retrieve("bm25", 1, dense, bm25) == [(2, 3.0)] and asked == [("bm25", 1)]
    asked.clear()
    assert [lab for lab, _ in retrieve("hybrid", 1, dense, bm25)] == [2]
    assert asked == [("dense", CANDIDATES(1)), ("bm25", CANDIDATES(1))]
    assert CANDIDATES(1) == 20 and CANDIDATES(10) == 40
    with pytest.raises(InvalidInput):
        retrieve("sparse", 1, dense, bm25)
