"""Adapter tensors round-trip through safetensors bytes, zero-copy, and corruption is caught."""
from __future__ import annotations

import numpy as np
import pytest
import safetensors.numpy

from paramdb.errors import CorruptData
from paramdb.storage.codec import decode_tensors, decode_vector, encode_tensors, encode_vector, read_metadata


@pytest.fixture
def tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"b.lora_B": rng.standard_normal((8, 4)), "a.lora_A": rng.standard_normal((4, 8)),
            "bias": rng.standard_normal(3)}


def test_roundtrip_casts_to_fp16(tensors):
    out = decode_tensors(encode_tensors(tensors))
    assert set(out) == set(tensors)
    for name, arr in tensors.items():
        assert out[name].dtype == np.float16
        np.testing.assert_allclose(out[name], arr.astype(np.float16))


def test_float32_is_supported(tensors):
    out = decode_tensors(encode_tensors(tensors, dtype=np.float32))
    np.testing.assert_array_equal(out["bias"], tensors["bias"].astype(np.float32))


def test_safetensors_library_reads_our_bytes(tensors):
    loaded = safetensors.numpy.load(encode_tensors(tensors))
    for name, arr in tensors.items():
        np.testing.assert_array_equal(loaded[name], arr.astype(np.float16))


def test_header_is_padded_and_tensors_sorted(tensors):
    buf = encode_tensors(tensors)
    n = int.from_bytes(buf[:8], "little")
    assert n % 8 == 0
    assert buf.index(b"a.lora_A") < buf.index(b"b.lora_B") < buf.index(b"bias")


def test_encoding_is_deterministic(tensors):
    assert encode_tensors(tensors) == encode_tensors(dict(reversed(list(tensors.items()))))


def test_metadata_carries_crc_and_caller_fields(tensors):
    meta = read_metadata(encode_tensors(tensors, metadata={"base_model": "m1"}))
    assert meta["base_model"] == "m1"
    assert len(meta["crc32"]) == 8


def test_decode_is_zero_copy_and_read_only(tensors):
    buf = bytearray(encode_tensors(tensors))
    out = decode_tensors(buf)
    for arr in out.values():
        assert np.shares_memory(arr, np.frombuffer(buf, np.uint8))
        assert not arr.flags.writeable


def test_decode_accepts_memoryview(tensors):
    buf = encode_tensors(tensors)
    out = decode_tensors(memoryview(buf))
    np.testing.assert_array_equal(out["bias"], decode_tensors(buf)["bias"])


def test_flipped_data_byte_fails_checksum(tensors):
    buf = bytearray(encode_tensors(tensors))
    buf[-1] ^= 0x01
    with pytest.raises(CorruptData, match="checksum"):
        decode_tensors(buf)


def test_flipped_byte_passes_without_verify(tensors):
    buf = bytearray(encode_tensors(tensors))
    buf[-1] ^= 0x01
    assert set(decode_tensors(buf, verify=False)) == set(tensors)


@pytest.mark.parametrize("cut", [0, 4, 8, 20, -1])
def test_truncated_buffer_raises_corrupt(tensors, cut):
    buf = encode_tensors(tensors)
    with pytest.raises(CorruptData):
        decode_tensors(buf[:cut])


@pytest.mark.parametrize("header", [b"not json", b"[1, 2]", b'{"x": {"dtype": "F16"}}',
                                    b'{"x": {"dtype": "F16", "shape": [4], "data_offsets": [0, 999]}}',
                                    b'{"x": {"dtype": "Q9", "shape": [1], "data_offsets": [0, 2]}}',
                                    b'{"__metadata__": {"crc32": 5}}'])
def test_malformed_header_raises_corrupt(header):
    buf = len(header).to_bytes(8, "little") + header + b"\0" * 8
    with pytest.raises(CorruptData):
        decode_tensors(buf, verify=False)


def test_foreign_file_without_crc_needs_verify_off():
    buf = safetensors.numpy.save({"w": np.ones(3, np.float32)})
    with pytest.raises(CorruptData, match="no crc32"):
        decode_tensors(buf)
    np.testing.assert_array_equal(decode_tensors(buf, verify=False)["w"], np.ones(3, np.float32))


def test_vector_roundtrip_is_float32_copy():
    v = np.arange(5, dtype=np.float64)
    buf = encode_vector(v)
    assert len(buf) == 20
    out = decode_vector(buf)
    assert out.dtype == np.float32 and out.flags.writeable
    np.testing.assert_array_equal(out, v.astype(np.float32))


def test_vector_bytes_of_wrong_length_raise_corrupt():
    with pytest.raises(CorruptData):
        decode_vector(b"\0" * 7)
