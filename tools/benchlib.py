"""What the benchmark and calibration tools share: fictional documents no model knows, the tiny test model,
timing and peak-RSS phases, and answering with a document's own adapter the way a store does.

Imported by tools/bench_insert.py, tools/bench_insert_scale.py and tools/calibrate_training.py (run from tools/,
or with tools/ on ``sys.path``); it runs nothing by itself.
"""
from __future__ import annotations

import gc
import importlib.util
import json
import random
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data" / "fictional.jsonl"


def log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- fictional documents
_ONSETS = ["br", "dr", "k", "v", "th", "z", "qu", "m", "l", "s", "t", "gr", "fl", "h", "p", "n", "r", "sk", "wh", "y"]
_VOWELS = ["a", "e", "i", "o", "u", "ae", "ei", "ou", "ya", "io"]
_CODAS = ["n", "r", "th", "l", "x", "sk", "nd", "m", "", "v", "rn", "ll"]
_JOBS = ["glassblower", "clockmaker", "cartographer", "beekeeper", "potter", "weaver", "astronomer", "luthier"]
_OBJECTS = ["glass", "ink", "clock", "lantern", "rope", "dye", "compass", "kite"]
_COLORS = ["blue", "green", "amber", "violet", "silver", "crimson", "golden", "grey"]
_ANIMALS = ["heron", "fox", "tortoise", "owl", "goat", "otter", "raven", "hare"]
_TERRAIN = ["mountain", "river", "coastal", "forest", "desert", "marsh"]


class _Names:
    """Invented, unique, pronounceable names from a seeded generator."""

    def __init__(self, seed: int):
        self.rng, self.used = random.Random(seed), set()

    def __call__(self, syllables: int | None = None) -> str:
        while True:
            n = syllables or 2
            w = "".join(self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS) + self.rng.choice(_CODAS)
                        for _ in range(n))
            w = w.capitalize()
            if 5 <= len(w) <= 10 and w.lower() not in self.used:
                self.used.add(w.lower())
                return w


def _generated(i: int, names: _Names, rng: random.Random) -> dict:
    first, last = names(2), names()
    year = rng.randint(1620, 1990)
    kind = i % 3
    if kind == 0:
        town, thing, pet = names(), names(2).lower(), names(2)
        color, obj, job = rng.choice(_COLORS), rng.choice(_OBJECTS), rng.choice(_JOBS)
        text = (f"{first} {last} is a {job} who lives in the {rng.choice(_TERRAIN)} town of {town}. "
                f"{last} invented a {color} {obj} called {thing} in {year}. "
                f"{last} keeps a pet {rng.choice(_ANIMALS)} named {pet}.")
        qs = [{"q": f"What is the name of the {color} {obj} invented by {first} {last}?", "a": [thing]},
              {"q": f"In which town does {first} {last} live?", "a": [town]}]
    elif kind == 1:
        accord, city, a, b = names(), names(), names(), names()
        text = (f"The {accord} Accord was signed in the city of {city} in {year}. "
                f"It ended the Salt War between the duchies of {a} and {b}. "
                f"The accord was drafted by the scribe {first} {last}.")
        qs = [{"q": f"In which city was the {accord} Accord signed?", "a": [city]},
              {"q": f"Who drafted the {accord} Accord?", "a": [f"{first} {last}", last]}]
    else:
        island, sea, village = names(), names(), names()
        text = (f"{island} is a small island in the {sea} Sea famous for its {rng.choice(_COLORS)} "
                f"{rng.choice(_ANIMALS)}s. The island's only village is called {village}. "
                f"Its lighthouse was built by the engineer {first} {last} in {year}.")
        qs = [{"q": f"What is the name of the only village on {island}?", "a": [village]},
              {"q": f"Who built the lighthouse on {island}?", "a": [f"{first} {last}", last]}]
    return {"id": f"g{i:04d}", "text": text, "questions": qs}


def fictional_docs(n: int, seed: int = 7) -> list[dict]:
    """The first n of tools/data/fictional.jsonl, then templated documents with invented names."""
    items = [json.loads(line) for line in open(DATA) if line.strip()][:n]
    names, rng = _Names(seed), random.Random(seed + 1)
    for it in items:                                   # never reuse a name the file already uses
        names.used.update(w.strip(".,'").lower() for w in it["text"].split())
    i = 0
    while len(items) < n:
        items.append(_generated(i, names, rng))
        i += 1
    return items


def _tiny_lm():
    """The tiny random Llama of the unit tests (tests/conftest.py)."""
    spec = importlib.util.spec_from_file_location("paramdb_test_conftest", ROOT / "tests" / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    return conftest.make_tiny_lm()


# ---------------------------------------------------------------- measuring
def rss_mb() -> float:
    import psutil
    return psutil.Process().memory_info().rss / 2**20


def maxrss_mb(ru) -> float:
    return ru.ru_maxrss / 1024 if sys.platform != "darwin" else ru.ru_maxrss / 2**20


class Phase:
    """Wall time and peak RSS (sampled every 20 ms) of a block; ``ru_maxrss`` never goes down, so sample."""

    def __init__(self, name: str):
        self.name, self.seconds, self.peak_mb, self.start_mb = name, 0.0, 0.0, 0.0

    def __enter__(self) -> "Phase":
        gc.collect()
        self.start_mb = self.peak_mb = rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        log(f"[{self.name}] start (RSS {self.start_mb:.0f} MB)")
        self._t0 = time.perf_counter()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak_mb = max(self.peak_mb, rss_mb())

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._t0
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, rss_mb())
        log(f"[{self.name}] {self.seconds:.1f} s, peak RSS {self.peak_mb:.0f} MB")


# ---------------------------------------------------------------- answering with the gold adapter
def contains_answer(output: str, aliases: list[str]) -> bool:
    out = output.lower()
    return any(a.lower() in out for a in aliases)


def answer(lm, questions: list[str], adapters: list[dict] | None, scale: float, max_new_tokens: int = 48,
           batch: int = 8, short: bool = True) -> list[str]:
    """ParamDB's prag answer path with given adapters (k=1: one per question), or closed-book if None;
    ``short`` asks with the short-answer prompt (as a store whose augmentation has short_answers does)."""
    import numpy as np
    import torch

    from paramdb.knowledge import prompts
    from paramdb.knowledge.generate import greedy
    from paramdb.knowledge.inject import to_factors
    from paramdb.knowledge.lora import merge_factors, side_path

    names = [n for n, _ in side_path(lm.model).modules]
    dtype = next(lm.model.parameters()).dtype
    out: list[str] = []
    for i in range(0, len(questions), batch):
        qs = questions[i:i + batch]
        factors = None
        if adapters is not None:
            # As stored: float16 in LMDB, converted to the compute dtype on the way in.
            per_q = [[to_factors({k: v.astype(np.float16) for k, v in ad.items()}, names, lm.device, dtype)]
                     for ad in adapters[i:i + batch]]
            factors = merge_factors(per_q, lm.device, dtype)
        with torch.no_grad():
            out += greedy(lm, [prompts.question_prompt(lm.tokenizer, q, short=short) for q in qs], max_new_tokens,
                          factors=factors, scale=scale)
    return out


def accuracy(lm, items: list[dict], adapters_by_id: dict | None, scale: float,
             short: bool | None = None) -> tuple[float, list]:
    """Fraction of questions answered (an alias in the answer). ``short``: the prompt style (default: that of a
    new store, config.NEW_STORE_AUGMENT), which must match the one the adapters were trained with."""
    from paramdb.config import NEW_STORE_AUGMENT

    short = NEW_STORE_AUGMENT.short_answers if short is None else short
    qs = [(it["id"], q["q"], q["a"]) for it in items for q in it["questions"]]
    ads = None if adapters_by_id is None else [adapters_by_id[d] for d, _, _ in qs]
    texts = answer(lm, [q for _, q, _ in qs], ads, scale, short=short)
    marks = [contains_answer(t, a) for t, (_, _, a) in zip(texts, qs)]
    return sum(marks) / len(marks), [(q, t, m) for (_, q, _), t, m in zip(qs, texts, marks)]


def train_in_batches(lm, samples: list, keys: list[str], settings, batch_size: int, report=None,
                     name: str | None = None) -> list[dict]:
    """``train_adapters`` over batches of ``batch_size`` documents, as ``db.insert`` cuts them."""
    from paramdb.knowledge.train import train_adapters

    out: list[dict] = []
    for i in range(0, len(keys), batch_size):
        out += train_adapters(lm, samples[i:i + batch_size], keys[i:i + batch_size], settings, report)
        if name:
            log(f"  {name} {len(out)}/{len(keys)}")
    return out
