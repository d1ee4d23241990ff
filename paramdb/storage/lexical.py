"""BM25 over row texts: derived data like the vector index, rebuilt whenever it is missing or stale.

An in-house inverted index (term -> postings of (slot, tf)) with numpy scoring, exact under every write:
``add`` upserts a label (its old postings go dead, a new slot takes the text), ``remove`` kills a slot and
takes its terms out of the document frequencies at once, so N, df and the average length always describe
the live documents only. Dead postings are skipped at search time and compacted away once they outnumber
the live documents, so no write ever rebuilds the whole index.

Saved as ``lexical.bm25`` (numpy .npz, no pickle: the live documents as CSR term ids + tfs, and the
vocabulary as UTF-8) with a ``lexical.bm25.json`` sidecar holding the metadata ``generation`` it reflects,
exactly as VectorIndex does. Labels are the metadata ``rowid`` integers.

Scoring is standard BM25 (k1=1.5, b=0.75, Lucene idf ``log(1 + (N - df + 0.5) / (df + 0.5))``), each
distinct query term counted once; ties are broken by the smaller label.
"""
from __future__ import annotations

import json
import os
import re
import unicodedata
from array import array
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

FILENAME = "lexical.bm25"
FORMAT = 1
K1, B = 1.5, 0.75

STOPWORDS = frozenset("""
a an and are as at be been being but by can could did do does doing for from had has have having he her
hers him his how i if in into is it its me my no nor not of on or our ours she so such than that the
their theirs them then there these they this those to too us was we were what when where which while who
whom whose why will with would you your yours s t
""".split())

_TOKEN = re.compile(r"[^\W_]+")  # runs of unicode letters and digits


def tokenize(text: str) -> list[str]:
    """Lower-cased (NFKC) runs of letters/digits, English stopwords dropped; used for documents and queries."""
    text = unicodedata.normalize("NFKC", text).lower()
    return [t for t in _TOKEN.findall(text) if t not in STOPWORDS]


class LexicalIndex:
    """BM25 over integer labels; API mirrors :class:`paramdb.storage.vectors.VectorIndex`."""

    def __init__(self, path: str | Path, k1: float = K1, b: float = B):
        self.path = Path(path)
        self.sidecar = Path(f"{self.path}.json")
        self.k1, self.b = float(k1), float(b)
        self._reset()

    def _reset(self) -> None:
        self._vocab: dict[str, int] = {}
        self._terms: list[str] = []
        self._df = np.zeros(64, dtype=np.int64)
        self._slot: dict[int, int] = {}                   # live label -> slot
        self._n_slots = 0                                  # slots used, live or dead
        self._label = np.zeros(64, dtype=np.int64)         # per slot
        self._len = np.zeros(64, dtype=np.float64)         # per slot: tokens kept
        self._alive = np.zeros(64, dtype=bool)             # per slot
        self._doc_terms: list[np.ndarray] = []             # per slot: distinct term ids (int32)
        self._doc_tfs: list[np.ndarray] = []               # per slot: their counts (int32)
        self._post: dict[int, tuple[np.ndarray, np.ndarray]] = {}   # term -> (slots int64, tfs float64)
        self._pending: dict[int, tuple[array, array]] = {}          # appended since the term was last read
        self._total_len = 0.0

    def __len__(self) -> int:
        return len(self._slot)

    def __contains__(self, label: object) -> bool:
        return label in self._slot

    def labels(self) -> set[int]:
        return set(self._slot)

    # -- persistence ----------------------------------------------------------------------------------
    def load_or_none(self, generation: int) -> bool:
        """Load the saved index if it reflects exactly ``generation``; False means the caller rebuilds."""
        try:
            info = json.loads(self.sidecar.read_text())
            if (info.get("generation") != generation or info.get("format") != FORMAT
                    or info.get("k1") != self.k1 or info.get("b") != self.b or not self.path.exists()):
                return False
            with np.load(self.path, allow_pickle=False) as z:
                labels, offsets = z["labels"].astype(np.int64), z["offsets"].astype(np.int64)
                terms, tfs = z["terms"].astype(np.int32), z["tfs"].astype(np.int32)
                raw = z["vocab"].tobytes().decode("utf-8")
            vocab = raw.split("\n") if raw else []
            n = len(labels)
            if (info.get("count") != n or offsets.shape != (n + 1,) or offsets[0] != 0
                    or offsets[-1] != len(terms) or len(tfs) != len(terms) or np.any(np.diff(offsets) < 0)
                    or (len(terms) and (terms.min() < 0 or terms.max() >= len(vocab) or tfs.min() < 1))
                    or len(set(labels.tolist())) != n or len(set(vocab)) != len(vocab)):
                return False
        except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError, AttributeError):
            return False  # missing, unreadable or corrupt: derived data, so just rebuild
        self._load_csr(labels, offsets, terms, tfs, vocab)
        return True

    def save(self, generation: int) -> None:
        """Atomic: the sidecar goes first and comes back last, so no crash pairs an index with the
        wrong generation."""
        self.sidecar.unlink(missing_ok=True)
        labels, offsets, terms, tfs, vocab = self._to_csr()
        tmp = Path(f"{self.path}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, labels=labels, offsets=offsets, terms=terms, tfs=tfs,
                     vocab=np.frombuffer("\n".join(vocab).encode("utf-8"), dtype=np.uint8))
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)
        info = {"generation": int(generation), "format": FORMAT, "k1": self.k1, "b": self.b,
                "count": len(labels)}
        tmp_side = Path(f"{self.sidecar}.tmp")
        tmp_side.write_text(json.dumps(info))
        os.chmod(tmp_side, 0o600)
        os.replace(tmp_side, self.sidecar)

    def _to_csr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
        """Live documents in slot order, with the vocabulary pruned to terms some live document uses."""
        slots = np.flatnonzero(self._alive[:self._n_slots])
        labels = self._label[slots].copy()
        parts_t = [self._doc_terms[s] for s in slots]
        parts_f = [self._doc_tfs[s] for s in slots]
        offsets = np.zeros(len(slots) + 1, dtype=np.int64)
        np.cumsum([len(p) for p in parts_t], out=offsets[1:])
        terms = np.concatenate(parts_t) if parts_t else np.zeros(0, np.int32)
        tfs = np.concatenate(parts_f) if parts_f else np.zeros(0, np.int32)
        used = self._df[:len(self._terms)] > 0
        remap = np.cumsum(used, dtype=np.int64) - 1
        vocab = [t for t, u in zip(self._terms, used.tolist()) if u]
        return labels, offsets, remap[terms].astype(np.int32), tfs.astype(np.int32), vocab

    def _load_csr(self, labels: np.ndarray, offsets: np.ndarray, terms: np.ndarray, tfs: np.ndarray,
                  vocab: list[str]) -> None:
        """Replace the contents with these documents (slots 0..n-1), building postings vectorized."""
        self._reset()
        n, v = len(labels), len(vocab)
        self._terms = list(vocab)
        self._vocab = {t: i for i, t in enumerate(vocab)}
        self._grow_terms(v)
        self._grow_slots(n)
        self._df[:v] = np.bincount(terms, minlength=v)
        self._n_slots = n
        self._label[:n] = labels
        self._alive[:n] = True
        self._slot = dict(zip(labels.tolist(), range(n)))
        slot_of = np.repeat(np.arange(n, dtype=np.int64), np.diff(offsets))
        self._len[:n] = np.bincount(slot_of, weights=tfs, minlength=n)
        self._total_len = float(self._len[:n].sum())
        cuts = offsets[1:-1]
        self._doc_terms = np.split(terms, cuts) if n else []
        self._doc_tfs = np.split(tfs, cuts) if n else []
        order = np.argsort(terms, kind="stable")
        sorted_terms = terms[order]
        post_slots, post_tfs = slot_of[order], tfs[order].astype(np.float64)
        bounds = np.searchsorted(sorted_terms, np.arange(v + 1))
        self._post = {t: (post_slots[bounds[t]:bounds[t + 1]], post_tfs[bounds[t]:bounds[t + 1]])
                      for t in np.flatnonzero(np.diff(bounds)).tolist()}

    # -- writes ---------------------------------------------------------------------------------------
    def build(self, items: Iterable[tuple[int, str]]) -> None:
        """Start from scratch with ``items`` (label, text); a repeated label keeps its last text."""
        docs: dict[int, str] = {}
        for label, text in items:
            docs.pop(int(label), None)
            docs[int(label)] = text
        vocab: dict[str, int] = {}
        parts_t, parts_f, lens = [], [], []
        for text in docs.values():
            counts = Counter(tokenize(text))
            parts_t.append(np.fromiter((vocab.setdefault(t, len(vocab)) for t in counts), np.int32, len(counts)))
            parts_f.append(np.fromiter(counts.values(), np.int32, len(counts)))
            lens.append(len(counts))
        offsets = np.zeros(len(docs) + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        terms = np.concatenate(parts_t) if parts_t else np.zeros(0, np.int32)
        tfs = np.concatenate(parts_f) if parts_f else np.zeros(0, np.int32)
        self._load_csr(np.fromiter(docs, np.int64, len(docs)), offsets, terms, tfs, list(vocab))

    def add(self, labels: list[int], texts: list[str]) -> None:
        """Insert or replace: a known label gets the new text (its old text no longer counts anywhere)."""
        if len(labels) != len(texts):
            raise ValueError(f"{len(labels)} labels but {len(texts)} texts")
        last = {int(lab): text for lab, text in zip(labels, texts)}  # a label twice in one batch: last wins
        self.remove(last)
        self._grow_slots(self._n_slots + len(last))
        for label, text in last.items():
            counts = Counter(tokenize(text))
            ids = np.fromiter((self._term_id(t) for t in counts), np.int32, len(counts))
            tfs = np.fromiter(counts.values(), np.int32, len(counts))
            slot = self._n_slots
            self._n_slots += 1
            self._slot[label] = slot
            self._label[slot], self._alive[slot] = label, True
            self._len[slot] = float(tfs.sum())
            self._total_len += self._len[slot]
            self._doc_terms.append(ids)
            self._doc_tfs.append(tfs)
            self._df[ids] += 1
            for t, f in zip(ids.tolist(), tfs.tolist()):
                pend = self._pending.get(t)
                if pend is None:
                    pend = self._pending[t] = (array("q"), array("d"))
                pend[0].append(slot)
                pend[1].append(f)

    def remove(self, labels: Iterable[int]) -> None:
        """Drop labels; unknown or already removed ones are ignored."""
        for lab in labels:
            slot = self._slot.pop(int(lab), None)
            if slot is None:
                continue
            self._alive[slot] = False
            self._df[self._doc_terms[slot]] -= 1
            self._total_len -= self._len[slot]
            self._doc_terms[slot] = self._doc_tfs[slot] = _EMPTY  # dead slots keep no term lists
        if not self._slot:
            self._total_len = 0.0
        dead = self._n_slots - len(self._slot)
        if dead > max(1024, len(self._slot)):
            self._load_csr(*self._to_csr())  # compaction: amortised O(1) per removal

    def _term_id(self, term: str) -> int:
        tid = self._vocab.get(term)
        if tid is None:
            tid = self._vocab[term] = len(self._terms)
            self._terms.append(term)
            self._grow_terms(tid + 1)
        return tid

    def _grow_terms(self, need: int) -> None:
        if need > len(self._df):
            df = np.zeros(max(need, 2 * len(self._df)), dtype=np.int64)
            df[:len(self._df)] = self._df
            self._df = df

    def _grow_slots(self, need: int) -> None:
        cap = len(self._label)
        if need > cap:
            cap = max(need, 2 * cap)
            for name in ("_label", "_len", "_alive"):
                old = getattr(self, name)
                new = np.zeros(cap, dtype=old.dtype)
                new[:len(old)] = old
                setattr(self, name, new)

    def _postings(self, term: int) -> tuple[np.ndarray, np.ndarray]:
        base = self._post.get(term)
        pend = self._pending.pop(term, None)
        if pend is not None:
            slots, tfs = np.frombuffer(pend[0], np.int64), np.frombuffer(pend[1], np.float64)
            base = (slots.copy(), tfs.copy()) if base is None else \
                (np.concatenate([base[0], slots]), np.concatenate([base[1], tfs]))
            self._post[term] = base
        return base if base is not None else (_EMPTY_SLOTS, _EMPTY_TFS)

    # -- search ---------------------------------------------------------------------------------------
    def search(self, query: str, k: int, allowed: set[int] | None = None) -> list[tuple[int, float]]:
        """(label, BM25 score) best first, only documents sharing a term with ``query``; ``allowed``
        restricts the labels. Ties go to the smaller label."""
        n_live = len(self._slot)
        k = int(k)
        if k <= 0 or n_live == 0:
            return []
        terms = {self._vocab[t] for t in tokenize(query) if t in self._vocab}
        terms = [t for t in terms if self._df[t] > 0]
        if not terms:
            return []
        k1, b = self.k1, self.b
        avgdl = self._total_len / n_live or 1.0
        norm = k1 * (1.0 - b) + (k1 * b / avgdl) * self._len[:self._n_slots]  # per slot
        scores = np.zeros(self._n_slots, dtype=np.float64)
        for t in sorted(terms):  # a fixed order: equal documents get bit-identical scores
            slots, tfs = self._postings(t)
            df = float(self._df[t])
            idf = np.log1p((n_live - df + 0.5) / (df + 0.5))
            scores[slots] += idf * (k1 + 1.0) * tfs / (tfs + norm[slots])
        cand = np.flatnonzero(scores)
        cand = cand[self._alive[cand]]
        if allowed is not None:
            wanted = np.fromiter((int(a) for a in allowed), np.int64)
            cand = cand[np.isin(self._label[cand], wanted)]
        if not len(cand):
            return []
        s = scores[cand]
        if len(cand) > k:
            cut = np.partition(s, len(s) - k)[len(s) - k]  # the k-th best score; keep every tie of it
            keep = s >= cut
            cand, s = cand[keep], s[keep]
        labels = self._label[cand]
        order = np.lexsort((labels, -s))[:k]
        return [(int(labels[i]), float(s[i])) for i in order]


_EMPTY = np.zeros(0, dtype=np.int32)
_EMPTY_SLOTS = np.zeros(0, dtype=np.int64)
_EMPTY_TFS = np.zeros(0, dtype=np.float64)
