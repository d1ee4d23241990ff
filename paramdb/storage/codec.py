"""Adapter tensors <-> bytes in the safetensors format, and embeddings <-> raw float32 bytes.

Safetensors rather than pickle: stored bytes are never executable, and any safetensors reader can open an
exported adapter. Decoding returns zero-copy views so that reading an adapter straight out of an LMDB
memoryview costs no copy; the CRC32 in ``__metadata__`` catches bit rot that LMDB itself would not see.

An adapter is stored in one of ``ADAPTER_DTYPES``, and each blob says which: a float16 blob holds its tensors
by name; an int8 blob (paramdb/storage/quantize.py) holds two tensors, the int8 data and the scales, and names
its scheme and layout in ``__metadata__``. So one store may hold both, and every reader handles both.
"""
from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Mapping

import numpy as np

from paramdb.errors import CorruptData, InvalidInput
from paramdb.storage import quantize

# Safetensors dtype names <-> little-endian numpy dtypes (the format is little-endian by definition).
_TO_NUMPY: dict[str, np.dtype] = {
    "F16": np.dtype("<f2"), "F32": np.dtype("<f4"), "F64": np.dtype("<f8"),
    "I8": np.dtype("i1"), "I16": np.dtype("<i2"), "I32": np.dtype("<i4"), "I64": np.dtype("<i8"),
    "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
}
_FROM_NUMPY: dict[np.dtype, str] = {v.newbyteorder("<"): k for k, v in _TO_NUMPY.items()}
_METADATA = "__metadata__"

Buffer = bytes | bytearray | memoryview

# The encoding of LMDB values (adapters: this safetensors image with its CRC32; embeddings: raw float32).
# Recorded per store (store_info 'blob_format'); a change bumps it and adds a step to paramdb/ops/migrate.py.
# 1: float16 adapters. 2: an adapter may also be an int8 blob (self-describing); every format-1 value is a
# valid format-2 value, so migrating 1 -> 2 rewrites nothing.
BLOB_FORMAT = 2
ADAPTER_DTYPES = ("float16", "int8")   # how a store keeps the adapters it writes (StoreConfig.adapter_dtype)
_QUANT_KEY, _LAYOUT_KEY = "paramdb_quant", "paramdb_layout"
_QDATA, _QSCALES = "paramdb.int8", "paramdb.scales"


def encode_tensors(
    tensors: Mapping[str, np.ndarray],
    dtype: np.dtype | type = np.float16,
    metadata: Mapping[str, str] | None = None,
) -> bytes:
    """Serialize ``tensors`` (cast to ``dtype``) as one safetensors file image.

    Names are laid out in sorted order so equal inputs give equal bytes (handy for dedup and tests).
    """
    target = np.dtype(dtype).newbyteorder("<")
    if target not in _FROM_NUMPY:
        raise InvalidInput(f"cannot encode tensors as {np.dtype(dtype)}; use float16 or float32")
    return _encode({name: np.ascontiguousarray(np.asarray(t), dtype=target) for name, t in tensors.items()},
                   metadata)


def encode_adapter(tensors: Mapping[str, np.ndarray], adapter_dtype: str = "float16",
                   metadata: Mapping[str, str] | None = None) -> bytes:
    """An adapter as the blob a store keeps: float16 tensors by name, or int8 data + scales + layout."""
    check_adapter_dtype(adapter_dtype)
    if adapter_dtype == "float16":
        return encode_tensors(tensors, np.float16, metadata)
    for name in tensors:
        if name == _METADATA:
            raise InvalidInput(f"tensor name {_METADATA!r} is reserved by safetensors")
    q, scales, layout = quantize.quantize(tensors)
    return _encode({_QDATA: q, _QSCALES: scales.astype("<f4")},
                   {**(metadata or {}), _QUANT_KEY: quantize.SCHEME, _LAYOUT_KEY: layout})


def check_adapter_dtype(adapter_dtype: object) -> str:
    if adapter_dtype not in ADAPTER_DTYPES:
        raise InvalidInput(f"unknown adapter dtype {adapter_dtype!r}; valid: {', '.join(ADAPTER_DTYPES)}")
    return adapter_dtype


def _encode(arrays: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None) -> bytes:
    header: dict[str, object] = {}
    chunks: list[bytes] = []
    offset = 0
    for name in sorted(arrays):
        if name == _METADATA:
            raise InvalidInput(f"tensor name {_METADATA!r} is reserved by safetensors")
        arr = arrays[name]
        target = arr.dtype.newbyteorder("<")
        data = arr.tobytes()
        header[name] = {"dtype": _FROM_NUMPY[target], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    body = b"".join(chunks)
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta["crc32"] = format(zlib.crc32(body), "08x")
    header[_METADATA] = meta
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # pad so the data section starts 8-byte aligned
    return struct.pack("<Q", len(raw)) + raw + body


def _parse_header(buf: Buffer) -> tuple[dict, memoryview]:
    """Return (header, data section) or raise CorruptData; never any other exception type."""
    try:
        view = memoryview(buf)
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
    except (TypeError, ValueError) as e:
        raise CorruptData(f"adapter bytes are not a contiguous byte buffer: {e}") from None
    if len(view) < 8:
        raise CorruptData(f"adapter bytes too short ({len(view)} bytes) for a safetensors header")
    (n,) = struct.unpack("<Q", view[:8])
    if n > len(view) - 8:
        raise CorruptData(f"adapter header length {n} exceeds the {len(view)} bytes given (truncated?)")
    try:
        header = json.loads(bytes(view[8:8 + n]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise CorruptData(f"adapter header is not valid JSON: {e}") from None
    if not isinstance(header, dict):
        raise CorruptData("adapter header is not a JSON object")
    meta = header.get(_METADATA, {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise CorruptData("adapter header __metadata__ is not a string map")
    return header, view[8 + n:]


def read_metadata(buf: Buffer) -> dict[str, str]:
    """The ``__metadata__`` string map (includes ``crc32``), without touching the data section."""
    header, _ = _parse_header(buf)
    return dict(header.get(_METADATA, {}))


def decode_tensors(buf: Buffer, verify: bool = True) -> dict[str, np.ndarray]:
    """Parse a safetensors image into read-only arrays that are views into ``buf`` (no copy).

    The views keep ``buf`` alive, but an LMDB memoryview is only valid inside its read transaction:
    copy (``arr.copy()`` / ``torch.tensor``) before the transaction ends. An int8 blob decodes to new float32
    arrays (dequantized), under the adapter's own tensor names. With ``verify`` the data section
    must match its recorded CRC32; bytes written by other tools carry none, so decode those with
    ``verify=False``.
    """
    header, data = _parse_header(buf)
    if verify:
        _verify(header, data)
    if _QUANT_KEY in header.get(_METADATA, {}):
        flat, layout = _dequantized(header, data)
        return {e.name: flat[e.offset:e.offset + e.size].reshape(e.shape) for e in layout.entries}
    out: dict[str, np.ndarray] = {}
    for name, info in header.items():
        if name == _METADATA:
            continue
        dt, shape, begin = _entry(name, info, len(data))
        arr = np.frombuffer(data, dtype=dt, count=math.prod(shape), offset=begin).reshape(shape)
        arr.flags.writeable = False
        out[name] = arr
    return out


def _entry(name: str, info, size: int) -> tuple[np.dtype, tuple[int, ...], int]:
    """(dtype, shape, byte offset) of one header entry, checked against a data section of ``size`` bytes."""
    try:
        dt = _TO_NUMPY[info["dtype"]]
        shape = tuple(int(d) for d in info["shape"])
        begin, end = (int(x) for x in info["data_offsets"])
    except (KeyError, TypeError, ValueError):
        raise CorruptData(f"adapter tensor {name!r} has a malformed header entry") from None
    if min(shape, default=0) < 0 or not 0 <= begin <= end <= size or end - begin != math.prod(shape) * dt.itemsize:
        raise CorruptData(f"adapter tensor {name!r} has offsets out of range for its shape")
    return dt, shape, begin


def _verify(header: dict, data: memoryview) -> None:
    want = header.get(_METADATA, {}).get("crc32")
    if want is None:
        raise CorruptData("adapter bytes carry no crc32 checksum in __metadata__")
    if format(zlib.crc32(data), "08x") != want:
        raise CorruptData("adapter bytes fail their checksum (crc32 mismatch)")


def decode_flat(buf: Buffer, names: list[str]) -> tuple[np.ndarray, list[tuple[int, tuple[int, ...]]]]:
    """The whole data section as one flat array (a zero-copy view) and, for each of ``names``, its
    (element offset, shape) in it: the answer-time path, which needs no per-tensor arrays.

    CRC-checked like :func:`decode_tensors`; every named tensor must share one dtype (encode writes one).
    An int8 blob gives a new, writable float32 array: dequantizing is its one copy-and-convert.
    """
    header, data = _parse_header(buf)
    _verify(header, data)
    if _QUANT_KEY in header.get(_METADATA, {}):
        flat, layout = _dequantized(header, data)
        by_name = layout.by_name
        missing = next((n for n in names if n not in by_name), None)
        if missing is not None:
            raise CorruptData(f"adapter lacks tensor {missing!r}")
        return flat, [(by_name[n].offset, by_name[n].shape) for n in names]
    dtypes, where = set(), []
    for name in names:
        info = header.get(name)
        if not isinstance(info, dict):
            raise CorruptData(f"adapter lacks tensor {name!r}")
        dt, shape, begin = _entry(name, info, len(data))
        if begin % dt.itemsize:
            raise CorruptData(f"adapter tensor {name!r} has offsets out of range for its shape")
        dtypes.add(dt)
        where.append((begin // dt.itemsize, shape))
    if len(dtypes) > 1:
        raise CorruptData("adapter tensors mix dtypes; expected one")
    dt = dtypes.pop() if dtypes else np.dtype("<f2")
    flat = np.frombuffer(data, dtype=dt, count=len(data) // dt.itemsize)
    flat.flags.writeable = False
    return flat, where


def _dequantized(header: dict, data: memoryview) -> tuple[np.ndarray, quantize.ScaleLayout]:
    """An int8 blob's flat float32 adapter and its layout (entries with element offsets into it)."""
    meta = header[_METADATA]
    if meta[_QUANT_KEY] != quantize.SCHEME:
        raise CorruptData(f"adapter is quantized with scheme {meta[_QUANT_KEY]!r}, which this ParamDB cannot "
                          f"read (it reads {quantize.SCHEME!r}); upgrade ParamDB")
    layout = quantize.parse_layout(meta.get(_LAYOUT_KEY, ""))
    arrays = {}
    for name in (_QDATA, _QSCALES):
        info = header.get(name)
        if not isinstance(info, dict):
            raise CorruptData(f"int8 adapter lacks tensor {name!r}")
        dt, shape, begin = _entry(name, info, len(data))
        arrays[name] = np.frombuffer(data, dtype=dt, count=math.prod(shape), offset=begin)
    q, scales = arrays[_QDATA], arrays[_QSCALES]
    if q.dtype != np.int8 or scales.dtype != np.dtype("<f4") or (q.size, scales.size) != \
            (layout.n_elements, layout.n_scales):
        raise CorruptData("int8 adapter's data or scales do not match its layout")
    return quantize.dequantize(q, scales, layout), layout


def adapter_dtype(buf: Buffer) -> str:
    """Which of ``ADAPTER_DTYPES`` (or another float dtype, e.g. float32) a stored adapter blob is in,
    from its header alone."""
    header, _ = _parse_header(buf)
    if _QUANT_KEY in header.get(_METADATA, {}):
        return "int8"
    kinds = {info.get("dtype") for name, info in header.items() if name != _METADATA and isinstance(info, dict)}
    return {"F16": "float16", "F32": "float32", "F64": "float64"}.get(kinds.pop(), "unknown") \
        if len(kinds) == 1 else "unknown"


def encode_vector(v: np.ndarray) -> bytes:
    """An embedding as raw little-endian float32: the compact form stored in LMDB."""
    arr = np.asarray(v)
    if arr.ndim != 1:
        raise InvalidInput(f"an embedding must be one vector, got shape {arr.shape}")
    return arr.astype("<f4").tobytes()


def decode_vector(buf: Buffer) -> np.ndarray:
    """A float32 copy (so it outlives any LMDB transaction the bytes came from)."""
    n = memoryview(buf).nbytes
    if n % 4:
        raise CorruptData(f"embedding bytes ({n}) are not a whole number of float32 values")
    return np.frombuffer(buf, dtype="<f4").astype(np.float32)
