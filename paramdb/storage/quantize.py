"""int8 adapters: one absmax scale per rank component, dequantized on the way to the compute device.

A LoRA adapter's factors are A [r, in] and B [out, r]. The natural unit of scale is the rank component: row i
of A and column i of B are one direction of the update, and their magnitudes differ between components far
more than within one. One float32 scale per component costs 2·r scales per module, nothing beside the int8
data (r·(in + out) bytes), so an adapter takes half its fp16 bytes. A scale per output channel of B (or per
input channel of A) would cost one scale per 4 int8 values at r = 4 and give back most of the saving.

Scales are absmax / 127 (round to nearest): no value is clipped, and every element's error is at most half a
step, absmax / 254 of its component. A tensor of another shape (not 2-D) gets one scale for the whole tensor.

The layout (names, shapes, the scaled axis) is the same for every row of a store; it is written into each blob
compressed (so the blob describes itself) and parsed once per distinct layout.
"""
from __future__ import annotations

import base64
import functools
import json
import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from paramdb.errors import CorruptData

SCHEME = "int8-rank-absmax-v1"   # recorded in each blob's metadata; a new scheme gets a new name
QMAX = 127


@dataclass(frozen=True)
class Entry:
    """One tensor inside the flat int8 data: where its elements and its scales start."""

    name: str
    shape: tuple[int, ...]
    axis: int | None        # one scale per index along this axis; None: one scale for the whole tensor
    offset: int             # in elements of the flat data
    scale_offset: int       # in the scales vector

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def n_scales(self) -> int:
        return 1 if self.axis is None else self.shape[self.axis]


def scaled_axis(shape: tuple[int, ...]) -> int | None:
    """The rank axis of a 2-D factor (its smaller dimension: A's rows, B's columns); None otherwise."""
    if len(shape) != 2:
        return None
    return 0 if shape[0] <= shape[1] else 1


def quantize(tensors: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, str]:
    """(int8 flat data in sorted-name order, float32 scales, encoded layout) of an adapter's tensors."""
    parts, scales, spec = [], [], []
    for name in sorted(tensors):
        x = np.asarray(tensors[name], dtype=np.float32)
        axis = scaled_axis(x.shape)
        if axis is None:
            amax = np.abs(x).max(keepdims=True) if x.size else np.zeros(1, np.float32)
            s = amax.reshape(1) / QMAX
            per_elem = s[0]
        else:
            s = np.abs(x).max(axis=1 - axis) / QMAX if x.size else np.zeros(x.shape[axis], np.float32)
            per_elem = s[:, None] if axis == 0 else s[None, :]
        safe = np.where(per_elem == 0, 1.0, per_elem)
        q = np.clip(np.rint(x / safe), -QMAX, QMAX).astype(np.int8)
        parts.append(q.reshape(-1))
        scales.append(np.asarray(s, dtype=np.float32).reshape(-1))
        spec.append([name, list(x.shape), axis])
    flat = np.concatenate(parts) if parts else np.zeros(0, np.int8)
    all_scales = np.concatenate(scales) if scales else np.zeros(0, np.float32)
    return flat, all_scales, encode_layout(spec)


def encode_layout(spec: list) -> str:
    raw = json.dumps(spec, separators=(",", ":")).encode("utf-8")
    return base64.b64encode(zlib.compress(raw, 9)).decode("ascii")


class ScaleLayout:
    """A parsed layout: its entries by name, the sizes it calls for and, built on first use, the index that
    gives every element of the flat data its scale."""

    def __init__(self, entries: tuple[Entry, ...]):
        self.entries = entries
        self.by_name = {e.name: e for e in entries}
        self.n_elements = sum(e.size for e in entries)
        self.n_scales = sum(e.n_scales for e in entries)
        self._index: np.ndarray | None = None

    @property
    def scale_index(self) -> np.ndarray:
        if self._index is None:
            parts = [np.zeros(0, np.int32)]
            for e in self.entries:
                ids = np.arange(e.n_scales, dtype=np.int32) + e.scale_offset
                if e.axis is None:
                    parts.append(np.full(e.size, e.scale_offset, dtype=np.int32))
                elif e.axis == 0:
                    parts.append(np.repeat(ids, e.size // max(1, e.n_scales)))
                else:
                    parts.append(np.tile(ids, e.shape[0]))
            self._index = np.concatenate(parts)
        return self._index


@functools.lru_cache(maxsize=16)
def parse_layout(text: str) -> ScaleLayout:
    """An encoded layout, parsed (cached: every row of a store carries the same one)."""
    try:
        spec = json.loads(zlib.decompress(base64.b64decode(text.encode("ascii"), validate=True)))
        entries, offset, scale_offset = [], 0, 0
        for name, shape, axis in spec:
            shape = tuple(int(d) for d in shape)
            if min(shape, default=0) < 0 or (axis is not None and axis not in range(len(shape))):
                raise ValueError(name)
            e = Entry(str(name), shape, axis, offset, scale_offset)
            entries.append(e)
            offset += e.size
            scale_offset += e.n_scales
    except (ValueError, TypeError, zlib.error, UnicodeError):
        raise CorruptData("int8 adapter has a malformed layout in its metadata") from None
    return ScaleLayout(tuple(entries))


def dequantize(q: np.ndarray, scales: np.ndarray, layout: ScaleLayout) -> np.ndarray:
    """The flat float32 adapter: one pass that reads the int8 data (e.g. straight from LMDB's map), multiplies
    each element by its component's scale and writes the result; the scales are gathered by a cached index."""
    return np.multiply(q, scales.take(layout.scale_index), dtype=np.float32)
