"""int8 adapter blobs: the error bound of one scale per rank component, half the bytes, self-describing blobs
that every reader (decode_tensors, decode_flat, from_stored) takes beside float16 ones."""
from __future__ import annotations

import numpy as np
import pytest
import safetensors.numpy
import torch

from paramdb.errors import CorruptData, InvalidInput
from paramdb.knowledge.inject import from_stored
from paramdb.storage import codec, quantize

# The default model's LoRA shapes (SmolLM2-135M, r=4), two layers of them: what the blob sizes are about.
SHAPES = {"gate_proj": (576, 1536), "up_proj": (576, 1536), "down_proj": (1536, 576)}
MODULES = [f"model.layers.{i}.mlp.{m}" for i in range(2) for m in SHAPES]


def adapter(seed: int = 0, layers: int = 2, rank: int = 4) -> dict[str, np.ndarray]:
    """LoRA factors whose rank components differ in magnitude by 100x, as trained ones do."""
    rng = np.random.default_rng(seed)
    comp = np.logspace(-3, -1, rank).astype(np.float32)
    out = {}
    for i in range(layers):
        for m, (d_in, d_out) in SHAPES.items():
            out[f"model.layers.{i}.mlp.{m}.lora_A"] = rng.standard_normal((rank, d_in), np.float32) * comp[:, None]
            out[f"model.layers.{i}.mlp.{m}.lora_B"] = rng.standard_normal((d_out, rank), np.float32) * comp[None, :]
    return out


def test_every_element_is_within_half_a_step_of_its_rank_component():
    tensors = adapter()
    back = codec.decode_tensors(codec.encode_adapter(tensors, "int8"))
    assert set(back) == set(tensors)
    for name, x in tensors.items():
        axis = 1 if name.endswith("lora_A") else 0          # reduce over everything but the rank axis
        step = np.abs(x).max(axis=axis, keepdims=True) / 127
        assert back[name].dtype == np.float32 and back[name].shape == x.shape
        assert np.all(np.abs(back[name] - x) <= step / 2 * (1 + 1e-5))


def test_the_small_rank_components_keep_their_own_precision():
    """Per-tensor scaling would flatten the 1e-3 component to zero; per component it keeps ~0.4% error."""
    tensors = adapter()
    back = codec.decode_tensors(codec.encode_adapter(tensors, "int8"))
    a = "model.layers.0.mlp.up_proj.lora_A"
    rel = np.abs(back[a][0] - tensors[a][0]).max() / np.abs(tensors[a][0]).max()
    assert rel <= 1 / 254 + 1e-6


def test_an_int8_blob_takes_at_most_half_the_bytes_of_float16():
    tensors = adapter(layers=30)                     # a whole SmolLM2-135M adapter: 180 tensors
    fp16, int8 = codec.encode_adapter(tensors, "float16"), codec.encode_adapter(tensors, "int8")
    assert len(int8) / len(fp16) <= 0.5


def test_blobs_say_their_own_dtype():
    tensors = adapter()
    assert codec.adapter_dtype(codec.encode_adapter(tensors, "float16")) == "float16"
    assert codec.adapter_dtype(codec.encode_adapter(tensors, "int8")) == "int8"
    assert codec.adapter_dtype(codec.encode_tensors(tensors, np.float32)) == "float32"


def test_an_int8_blob_is_plain_safetensors_with_its_crc_and_metadata():
    buf = codec.encode_adapter(adapter(), "int8", {"doc_id": "d1"})
    loaded = safetensors.numpy.load(buf)
    assert loaded["paramdb.int8"].dtype == np.int8 and loaded["paramdb.scales"].dtype == np.float32
    meta = codec.read_metadata(buf)
    assert meta["doc_id"] == "d1" and meta["paramdb_quant"] == quantize.SCHEME and "crc32" in meta


def test_a_flipped_byte_in_an_int8_blob_fails_its_checksum():
    buf = bytearray(codec.encode_adapter(adapter(), "int8"))
    buf[-5] ^= 0x01
    with pytest.raises(CorruptData, match="checksum"):
        codec.decode_tensors(buf)
    with pytest.raises(CorruptData, match="checksum"):
        codec.decode_flat(buf, [f"{m}.lora_{x}" for m in MODULES for x in "AB"])


def test_an_unknown_scheme_is_refused_by_name():
    buf = codec._encode({"paramdb.int8": np.zeros(4, np.int8), "paramdb.scales": np.ones(1, "<f4")},
                        {"paramdb_quant": "int3-magic", "paramdb_layout": ""})
    with pytest.raises(CorruptData, match="int3-magic"):
        codec.decode_tensors(buf)


def test_a_zero_tensor_stays_zero():
    back = codec.decode_tensors(codec.encode_adapter({"w.lora_A": np.zeros((2, 8), np.float32)}, "int8"))
    assert np.all(back["w.lora_A"] == 0)


def test_float16_and_int8_blobs_give_factors_with_the_same_layout_and_values_within_the_bound():
    tensors = adapter()
    fp16 = from_stored(memoryview(codec.encode_adapter(tensors, "float16")), MODULES, "cpu", torch.float32)
    int8 = from_stored(memoryview(codec.encode_adapter(tensors, "int8")), MODULES, "cpu", torch.float32)
    assert fp16.layout == int8.layout                # so the two merge in one gather, mixed in one question
    for (a16, b16), (a8, b8) in zip(fp16, int8):
        assert torch.allclose(a8, a16, atol=float(a16.abs().max()) / 254 + 1e-3 * float(a16.abs().max()))
        assert torch.allclose(b8, b16, atol=float(b16.abs().max()) / 254 + 1e-3 * float(b16.abs().max()))


def test_an_unknown_adapter_dtype_is_one_clear_error():
    with pytest.raises(InvalidInput, match="unknown adapter dtype 'int3'; valid: float16, int8"):
        codec.encode_adapter(adapter(), "int3")
