"""The derived BM25 index: ranking, exactness under upserts and deletes, filters, persistence, speed."""
from __future__ import annotations

import math
import random
import time

import numpy as np
import pytest

from paramdb.storage.lexical import LexicalIndex, tokenize

DOCS = {
    1: "The cat sat on the mat.",
    2: "Dogs chase cats in the park.",
    3: "Quantum chromodynamics describes the strong interaction.",
    4: "The cat and the dog are friends; the cat is older.",
    5: "Paris is the capital of France.",
}


@pytest.fixture
def index(tmp_path) -> LexicalIndex:
    idx = LexicalIndex(tmp_path / "lexical.bm25")
    idx.build(DOCS.items())
    return idx


def reference_bm25(docs: dict[int, str], query: str, k1=1.5, b=0.75) -> dict[int, float]:
    """BM25 straight from the formula, for checking the index's numbers."""
    toks = {lab: tokenize(t) for lab, t in docs.items()}
    n = len(toks)
    avgdl = sum(map(len, toks.values())) / n
    out = {}
    for lab, words in toks.items():
        s = 0.0
        for term in set(tokenize(query)):
            df = sum(term in w for w in toks.values())
            tf = words.count(term)
            if tf:
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                s += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(words) / avgdl))
        if s:
            out[lab] = s
    return out


def assert_matches_reference(index: LexicalIndex, docs: dict[int, str], query: str) -> None:
    want = reference_bm25(docs, query)
    got = index.search(query, k=len(docs) + 5)
    assert {lab for lab, _ in got} == set(want)
    for lab, score in got:
        assert score == pytest.approx(want[lab], rel=1e-9)
    assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)


def test_tokenize_lowercases_splits_and_drops_stopwords():
    assert tokenize("The Café-Müller's 2nd_floor, ÉTÉ!") == ["café", "müller", "2nd", "floor", "été"]
    assert tokenize("what is the") == []


def test_exact_term_match_ranks_first(index):
    hits = index.search("quantum chromodynamics", k=3)
    assert hits[0][0] == 3 and len(hits) == 1
    assert index.search("capital city of FRANCE?", k=1)[0][0] == 5


def test_scores_are_standard_bm25(index):
    for q in ("cat", "cat dog park", "the strong cat", "paris france capital"):
        assert_matches_reference(index, DOCS, q)


def test_idf_favours_rare_terms(tmp_path):
    idx = LexicalIndex(tmp_path / "l")
    docs = {i: "common words here" for i in range(1, 9)}
    docs[20] = "common rare"
    docs[21] = "common common"
    idx.build(docs.items())
    hits = idx.search("common rare", k=3)
    assert hits[0][0] == 20
    # a rare term alone outweighs a frequent one
    assert dict(idx.search("rare", k=1))[20] > max(s for _, s in idx.search("common", k=20))


def test_remove_drops_a_label_and_updates_statistics(index):
    index.remove([1, 12345])
    assert len(index) == 4
    assert 1 not in [lab for lab, _ in index.search("cat mat", k=10)]
    assert index.search("mat", k=5) == []
    docs = {k: v for k, v in DOCS.items() if k != 1}
    assert_matches_reference(index, docs, "cat dog")
    index.remove([1])  # twice: ignored
    assert len(index) == 4


def test_add_with_existing_label_replaces_its_text(index):
    index.add([3], ["Paris hosts the Louvre museum."])
    assert len(index) == 5
    assert index.search("quantum", k=5) == []
    assert index.search("louvre", k=5)[0][0] == 3
    docs = {**DOCS, 3: "Paris hosts the Louvre museum."}
    assert_matches_reference(index, docs, "paris cat")


def test_last_text_wins_within_one_batch(tmp_path):
    idx = LexicalIndex(tmp_path / "l")
    idx.add([7, 7], ["alpha", "beta"])
    assert len(idx) == 1 and idx.search("alpha", 3) == [] and idx.search("beta", 3)[0][0] == 7


def test_incremental_equals_rebuild_under_churn(tmp_path):
    """Random inserts, upserts and deletes (past compaction) give the scores of a fresh build."""
    rng = random.Random(0)
    words = [f"w{i}" for i in range(60)]
    idx = LexicalIndex(tmp_path / "l")
    docs: dict[int, str] = {}
    for step in range(60):
        labels = [rng.randrange(400) for _ in range(40)]
        texts = [" ".join(rng.choices(words, k=rng.randint(1, 12))) for _ in labels]
        idx.add(labels, texts)
        docs.update(zip(labels, texts))
        gone = rng.sample(sorted(docs), k=min(len(docs), 30))
        idx.remove(gone)
        for g in gone:
            docs.pop(g)
        if step % 15 == 14:
            fresh = LexicalIndex(tmp_path / "f")
            fresh.build(docs.items())
            for q in ("w1 w2", "w3", "w5 w7 w11 w13"):
                assert idx.search(q, 50) == fresh.search(q, 50)
                assert_matches_reference(idx, docs, q)
    assert len(idx) == len(docs)


def test_allowed_filter(index):
    assert {lab for lab, _ in index.search("cat", k=10)} == {1, 4}
    assert [lab for lab, _ in index.search("cat", k=10, allowed={2, 4, 999})] == [4]
    assert [lab for lab, _ in index.search("cat", k=1, allowed={1, 2})] == [1]
    assert index.search("cat", k=10, allowed=set()) == []
    assert index.search("cat", k=10, allowed={5}) == []


def test_k_limits_and_ties_go_to_smaller_label(tmp_path):
    idx = LexicalIndex(tmp_path / "l")
    idx.build([(9, "same words"), (3, "same words"), (5, "same words"), (1, "other")])
    assert [lab for lab, _ in idx.search("same", k=2)] == [3, 5]
    assert idx.search("same", k=0) == []


def test_empty_index_and_empty_query(tmp_path, index):
    empty = LexicalIndex(tmp_path / "e")
    assert empty.search("anything", k=3) == [] and len(empty) == 0
    empty.build([])
    assert empty.search("anything", k=3) == []
    assert index.search("the of and", k=3) == [] and index.search("zzz", k=3) == []
    index.remove(list(DOCS))
    assert index.search("cat", k=3) == [] and len(index) == 0


def test_save_load_roundtrip(index, tmp_path):
    index.add([6], ["Berlin is the capital of Germany."])
    index.remove([2])
    index.save(generation=7)
    again = LexicalIndex(tmp_path / "lexical.bm25")
    assert again.load_or_none(7)
    assert len(again) == len(index) == 5
    for q in ("capital", "cat dog", "germany"):
        assert again.search(q, 10) == index.search(q, 10)
    again.add([8], ["capital letters"])  # keeps working incrementally after a load
    assert 8 in [lab for lab, _ in again.search("capital", 10)]
    assert not list(tmp_path.glob("*.tmp"))


def test_stale_generation_or_corrupt_file_means_rebuild(index, tmp_path):
    path = tmp_path / "lexical.bm25"
    assert not LexicalIndex(path).load_or_none(0)  # nothing saved yet
    index.save(generation=3)
    assert not LexicalIndex(path).load_or_none(4)
    path.write_bytes(b"not an npz")
    assert not LexicalIndex(path).load_or_none(3)
    index.save(generation=3)
    (tmp_path / "lexical.bm25.json").unlink()
    assert not LexicalIndex(path).load_or_none(3)


def test_saved_file_needs_no_pickle(index, tmp_path):
    index.save(1)
    with np.load(tmp_path / "lexical.bm25", allow_pickle=False) as z:
        assert {"labels", "offsets", "terms", "tfs", "vocab"} <= set(z.files)


@pytest.mark.slow
def test_search_speed_on_100k_docs(tmp_path):
    """Prints timings (not asserted): build, search, add and remove on 100k short synthetic docs."""
    rng = np.random.default_rng(0)
    vocab = np.array([f"t{i}" for i in range(30_000)])
    p = 1.0 / np.arange(1, len(vocab) + 1)  # Zipfian term frequencies, like real text
    p /= p.sum()
    lens = rng.integers(8, 30, size=100_000)
    words = vocab[rng.choice(len(vocab), size=int(lens.sum()), p=p)]
    cuts = np.cumsum(lens)[:-1]
    docs = [" ".join(w) for w in np.split(words, cuts)]
    idx = LexicalIndex(tmp_path / "lexical.bm25")
    t0 = time.perf_counter()
    idx.build(enumerate(docs, 1))
    t_build = time.perf_counter() - t0
    queries = [" ".join(rng.choice(vocab[:3000], size=5)) for _ in range(50)]
    queries += [" ".join(rng.choice(vocab[:20], size=3)) for _ in range(10)]  # very common terms
    idx.search(queries[0], 10)
    per_query = []
    for q in queries:
        t0 = time.perf_counter()
        idx.search(q, 10)
        per_query.append(time.perf_counter() - t0)
    t_search, t_worst = float(np.mean(per_query)), max(per_query)
    t0 = time.perf_counter()
    idx.add(list(range(100_001, 101_001)), docs[:1000])
    idx.remove(range(1, 1001))
    t_write = (time.perf_counter() - t0) / 2000
    t0 = time.perf_counter()
    for q in queries:
        idx.search(q, 10)
    t_after = (time.perf_counter() - t0) / len(queries)
    t0 = time.perf_counter()
    idx.save(1)
    t_save = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert LexicalIndex(tmp_path / "lexical.bm25").load_or_none(1)
    t_load = time.perf_counter() - t0
    print(f"\n100k docs: build {t_build:.2f}s, search {t_search * 1e3:.2f} ms/query "
          f"(worst {t_worst * 1e3:.2f}), after 1k adds + 1k removes {t_after * 1e3:.2f} ms/query, "
          f"write {t_write * 1e6:.0f} us/doc, "
          f"save {t_save:.2f}s, load {t_load:.2f}s")
    assert len(idx) == 100_000
