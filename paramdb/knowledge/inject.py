"""From stored adapter tensors to side-path factors on the compute device, with a bounded cache.

Stored adapters are read straight from LMDB's memory map; the one copy made is the conversion of the whole
data section to the compute dtype on the way to the device, and its result is what the cache keeps.
"""
from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import torch

from ..storage.codec import decode_flat
from .lora import merge_factors, tensor_names as module_tensor_names

Factors = list[tuple[torch.Tensor, torch.Tensor]]   # per target module: (A [r, in], B [out, r])
FlatLayout = tuple[tuple[int, tuple[int, int], int, tuple[int, int]], ...]   # per module: A offset, shape, B ...


class FlatFactors(Sequence):
    """One adapter as a single flat tensor plus where each module's A and B lie in it.

    Reads as a sequence of per-module (A, B) views (made on first use), but merging k of them for a question
    works on the flat tensors directly: one stack and one gather instead of hundreds of small tensor ops.
    """

    def __init__(self, flat: torch.Tensor, layout: FlatLayout):
        self.flat, self.layout = flat, layout
        self._views: Factors | None = None

    def _factors(self) -> Factors:
        if self._views is None:
            self._views = [(self.flat[ao:ao + a[0] * a[1]].view(a), self.flat[bo:bo + b[0] * b[1]].view(b))
                           for ao, a, bo, b in self.layout]
        return self._views

    def __len__(self) -> int:
        return len(self.layout)

    def __getitem__(self, i):
        return self._factors()[i]

    def nbytes(self) -> int:
        return self.flat.numel() * self.flat.element_size()


def tensor_names(module_names: list[str]) -> list[str]:
    """Every stored tensor name of an adapter over ``module_names``, in stored order (A, B per module)."""
    return [name for module in module_names for name in module_tensor_names(module)]


def from_stored(buf, module_names: list[str], device, dtype) -> FlatFactors:
    """Stored adapter bytes (e.g. an LMDB memoryview) → factors: the data section is copied and converted
    in one operation, in the order it is stored; the layout records where each module's factors are.
    An int8 blob arrives already dequantized into a new float32 array (its copy-and-convert), used as is."""
    flat, where = decode_flat(buf, tensor_names(module_names))
    if flat.flags.writeable:      # a fresh array of our own (int8 blob, dequantized): no second copy
        data = torch.from_numpy(flat).to(device=device, dtype=dtype)
    else:
        data = torch.frombuffer(bytearray(flat.data), dtype=_TORCH[flat.dtype.str]).to(device=device, dtype=dtype)
    layout = tuple((ao, a, bo, b) for (ao, a), (bo, b) in zip(where[0::2], where[1::2]))
    return FlatFactors(data, layout)


_TORCH = {"<f2": torch.float16, "<f4": torch.float32, "<f8": torch.float64}


def to_factors(tensors: dict[str, np.ndarray], module_names: list[str], device, dtype) -> FlatFactors:
    """Adapter arrays (e.g. fresh from training) → factors, one copy-and-convert for the whole adapter."""
    try:
        parts = [tensors[name] for name in tensor_names(module_names)]
    except KeyError as exc:
        raise ValueError(f"adapter lacks tensor {exc.args[0]}") from None
    flat = torch.from_numpy(np.concatenate([p.reshape(-1) for p in parts])).to(device=device, dtype=dtype)
    offsets = np.concatenate([[0], np.cumsum([p.size for p in parts])]).tolist()
    layout = tuple((offsets[2 * i], tuple(a.shape), offsets[2 * i + 1], tuple(b.shape))
                   for i, (a, b) in enumerate(zip(parts[0::2], parts[1::2])))
    return FlatFactors(flat, layout)


@functools.lru_cache(maxsize=8)
def _merge_plan(layout: FlatLayout, total: int, k: int):
    """Where each element of the merged layout comes from in k stacked flat adapters of ``total`` elements.

    Merged layout: every module's A_cat [k·r, in] (the k A's one under another), then every module's
    B_cat [out, k·r] (the k B's side by side), so scaling all B's is one operation on one slice.
    Returns (gather index, chunk sizes, chunk shapes, number of A elements).
    """
    a_index, b_index, a_sizes, b_sizes, a_shapes, b_shapes = [], [], [], [], [], []
    for a_off, (r, d_in), b_off, (d_out, r_b) in layout:
        a_index.append((np.arange(k)[:, None] * total + (a_off + np.arange(r * d_in))[None, :]).reshape(-1))
        b_src = b_off + np.arange(d_out * r_b).reshape(d_out, 1, r_b)
        b_index.append((b_src + np.arange(k)[None, :, None] * total).reshape(-1))
        a_sizes.append(k * r * d_in)
        b_sizes.append(d_out * k * r_b)
        a_shapes.append((k * r, d_in))
        b_shapes.append((d_out, k * r_b))
    index = torch.from_numpy(np.concatenate(a_index + b_index))
    return index, a_sizes + b_sizes, a_shapes + b_shapes, sum(a_sizes)


def question_scale(lora_scale: float, merge: str, weight: float, k: int) -> float:
    """The factor on each of a question's k merged B's: the LoRA scale (alpha/r) times the adapter weight,
    over k for a mean merge ("rank" spreads its weights, summing to 1, per adapter: merge_flat's ``weights``).
    One rule for answering and for exporting the merge (paramdb/interop)."""
    return lora_scale * weight / max(1, k) if merge == "mean" else lora_scale * weight


def merge_flat(adapters: list[list[FlatFactors]], device, dtype, scale: float | list[float] = 1.0,
               weights: list[list[float]] | None = None) -> Factors:
    """Batch of questions, each with its retrieved adapters → per-module (A [b, k·r, in], s·B [b, out, k·r]).

    Same result as ``lora.merge_factors`` with B scaled by ``scale`` (one value, or one per question;
    questions with fewer adapters get zero adapters, which add nothing), in four tensor operations plus
    one view per factor. ``weights[q][j]`` further scales question q's j-th adapter (its B), e.g. by rank.
    """
    scales = list(scale) if isinstance(scale, (list, tuple)) else [scale] * len(adapters)
    ref = next(ad for q in adapters for ad in q)
    if any(ad.layout != ref.layout for q in adapters for ad in q):   # e.g. one fresh from training: rare
        per_q = [[list(ad) if weights is None else [(a, b * weights[i][j]) for a, b in ad]
                  for j, ad in enumerate(q)] for i, q in enumerate(adapters)]
        merged = merge_factors(per_q, device, dtype)
        column = torch.tensor(scales, device=device, dtype=dtype).view(-1, 1, 1)
        return [(a, b * column) for a, b in merged]
    k, n = max(len(q) for q in adapters), len(adapters)
    zero = torch.zeros_like(ref.flat)
    stacked = torch.stack([q[j].flat if j < len(q) else zero for q in adapters for j in range(k)])
    index, sizes, shapes, n_a = _merge_plan(ref.layout, ref.flat.numel(), k)
    index = index.to(stacked.device)
    merged = stacked.view(-1).take(index).view(1, -1) if n == 1 else stacked.view(n, -1).index_select(1, index)
    merged = merged.to(device=device, dtype=dtype)
    if any(x != 1.0 for x in scales):
        merged[:, n_a:] *= torch.tensor(scales, device=merged.device, dtype=merged.dtype).view(-1, 1)
    if weights is not None:            # which of the k adapters each B element came from: its stacked row
        w = torch.tensor([list(q) + [0.0] * (k - len(q)) for q in weights], dtype=merged.dtype)
        source = (index[n_a:] // ref.flat.numel()) % k
        merged[:, n_a:] *= w[:, source.cpu()].to(merged.device)
    parts = [p.view(n, *shape) for p, shape in zip(torch.split(merged, sizes, dim=1), shapes)]
    half = len(parts) // 2
    return list(zip(parts[:half], parts[half:]))


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
