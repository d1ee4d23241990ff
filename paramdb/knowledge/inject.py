"""From stored adapter tensors to side-path factors on the compute device, with a bounded cache.

Stored adapters are fp16 numpy views straight into LMDB's memory map (no copy); the one copy made is the
conversion to the compute dtype on the way to the device, and its result is what the cache keeps.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

Factors = list[tuple[torch.Tensor, torch.Tensor]]   # per target module: (A [r, in], B [out, r])


def to_factors(tensors: dict[str, np.ndarray], module_names: list[str], device, dtype) -> Factors:
    """One copy-and-convert for the whole adapter, then views: 180 small conversions cost ~10x more.

    The source views alias LMDB's read-only map and die with the read transaction; the result never does.
    """
    try:
        parts = [tensors[f"{n}.lora_{x}"] for n in module_names for x in ("A", "B")]
    except KeyError as exc:
        raise ValueError(f"adapter lacks tensor {exc.args[0]}") from None
    flat = torch.from_numpy(np.concatenate([p.reshape(-1) for p in parts])).to(device=device, dtype=dtype)
    views = [v.view(p.shape) for v, p in zip(torch.split(flat, [p.size for p in parts]), parts)]
    return list(zip(views[0::2], views[1::2]))


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
        size = sum(a.numel() * a.element_size() + b.numel() * b.element_size() for a, b in factors)
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
