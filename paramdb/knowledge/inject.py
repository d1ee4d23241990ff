"""From stored adapter tensors to side-path factors on the compute device, with a bounded cache.

Stored adapters are fp16 numpy views straight into LMDB's memory map (no copy); the one copy made is the
conversion to the compute dtype on the way to the device, and its result is what the cache keeps.
"""
from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import torch

Factors = list[tuple[torch.Tensor, torch.Tensor]]   # per target module: (A [r, in], B [out, r])
Shapes = tuple[tuple[tuple[int, int], tuple[int, int]], ...]   # per module: (A shape, B shape)


class FlatFactors(Sequence):
    """One adapter as a single flat tensor in module order (A₀, B₀, A₁, B₁, ...).

    Reads as a sequence of per-module (A, B) views (made on first use), but merging k of them for a question
    works on the flat tensors directly: one stack and one gather instead of hundreds of small tensor ops.
    """

    def __init__(self, flat: torch.Tensor, shapes: Shapes):
        self.flat, self.shapes = flat, shapes
        self._views: Factors | None = None

    def _factors(self) -> Factors:
        if self._views is None:
            sizes = [n for (a, b) in self.shapes for n in (a[0] * a[1], b[0] * b[1])]
            parts = torch.split(self.flat, sizes)
            views = [v.view(shape) for v, shape in zip(parts, (s for pair in self.shapes for s in pair))]
            self._views = list(zip(views[0::2], views[1::2]))
        return self._views

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, i):
        return self._factors()[i]

    def nbytes(self) -> int:
        return self.flat.numel() * self.flat.element_size()


def to_factors(tensors: dict[str, np.ndarray], module_names: list[str], device, dtype) -> FlatFactors:
    """One copy-and-convert for the whole adapter: 180 small conversions cost ~10x more.

    The source views alias LMDB's read-only map and die with the read transaction; the result never does.
    """
    try:
        parts = [tensors[f"{n}.lora_{x}"] for n in module_names for x in ("A", "B")]
    except KeyError as exc:
        raise ValueError(f"adapter lacks tensor {exc.args[0]}") from None
    flat = torch.from_numpy(np.concatenate([p.reshape(-1) for p in parts])).to(device=device, dtype=dtype)
    shapes = tuple((tuple(a.shape), tuple(b.shape)) for a, b in zip(parts[0::2], parts[1::2]))
    return FlatFactors(flat, shapes)


@functools.lru_cache(maxsize=8)
def _merge_plan(shapes: Shapes, k: int) -> tuple[torch.Tensor, list[int], list[tuple[int, ...]]]:
    """Where each element of the merged layout comes from in k stacked flat adapters.

    Merged layout, per module: A_cat [k·r, in] (the k A's one under another), then B_cat [out, k·r]
    (the k B's side by side). Returns (gather index, chunk sizes, per-chunk shapes).
    """
    total = sum(a[0] * a[1] + b[0] * b[1] for a, b in shapes)
    index, sizes, views = [], [], []
    off = 0
    for (r, d_in), (d_out, r_b) in shapes:
        a_src = np.arange(r * d_in) + off
        index.append((np.arange(k)[:, None] * total + a_src[None, :]).reshape(-1))
        b_src = off + r * d_in + np.arange(d_out * r_b).reshape(d_out, 1, r_b)
        index.append((b_src + np.arange(k)[None, :, None] * total).reshape(-1))
        sizes += [k * r * d_in, d_out * k * r_b]
        views += [(k * r, d_in), (d_out, k * r_b)]
        off += r * d_in + d_out * r_b
    return torch.from_numpy(np.concatenate(index)), sizes, views


def merge_flat(adapters: list[list[FlatFactors]], device, dtype) -> Factors:
    """Batch of questions, each with its retrieved adapters → per-module (A [b, k·r, in], B [b, out, k·r]).

    Same result as ``lora.merge_factors`` (questions with fewer adapters get zero adapters, which add
    nothing) in three tensor ops plus one view per factor.
    """
    ref = next(ad for q in adapters for ad in q)
    k = max(len(q) for q in adapters)
    zero = torch.zeros_like(ref.flat)
    stacked = torch.stack([q[j].flat if j < len(q) else zero for q in adapters for j in range(k)])
    index, sizes, shapes = _merge_plan(ref.shapes, k)
    merged = stacked.view(len(adapters), -1).index_select(1, index.to(stacked.device))
    merged = merged.to(device=device, dtype=dtype)
    parts = [p.view(len(adapters), *shape) for p, shape in zip(torch.split(merged, sizes, dim=1), shapes)]
    return list(zip(parts[0::2], parts[1::2]))


class AdapterCache:
    """LRU of converted adapters keyed by blob key, bounded in bytes (hot documents skip LMDB entirely)."""

    def __init__(self, max_bytes: int = 256 << 20):
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[Factors, int]] = OrderedDict()
        self._bytes = 0
        self.hits = self.misses = 0

    def get(self, key: str) -> Factors | None:
        item = self._items.get(key)
        if item is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: str, factors: Factors) -> None:
        size = factors.nbytes() if isinstance(factors, FlatFactors) else \
            sum(a.numel() * a.element_size() + b.numel() * b.element_size() for a, b in factors)
        if size > self.max_bytes:
            return
        if key in self._items:
            self._bytes -= self._items.pop(key)[1]
        self._items[key] = (factors, size)
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, (_, s) = self._items.popitem(last=False)
            self._bytes -= s

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0

    def discard(self, key: str) -> None:
        item = self._items.pop(key, None)
        if item:
            self._bytes -= item[1]
