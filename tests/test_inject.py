"""Stored adapter bytes → side-path factors (always a copy), and the bounded LRU of converted adapters."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from paramdb.errors import CorruptData
from paramdb.knowledge.inject import AdapterCache, from_stored, merge_flat, to_factors
from paramdb.knowledge.lora import merge_factors
from paramdb.storage.codec import decode_tensors, encode_tensors

MODULES = ["layers.0.up_proj", "layers.0.down_proj"]


def stored_adapter() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {f"{MODULES[0]}.lora_A": rng.standard_normal((2, 4)), f"{MODULES[0]}.lora_B": rng.standard_normal((6, 2)),
            f"{MODULES[1]}.lora_A": rng.standard_normal((2, 6)), f"{MODULES[1]}.lora_B": rng.standard_normal((4, 2))}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])   # float16: no conversion needed, still a copy
def test_to_factors_copies_so_overwriting_the_source_buffer_changes_nothing(dtype):
    buf = bytearray(encode_tensors(stored_adapter()))              # fp16 safetensors, like a blob in LMDB
    views = decode_tensors(buf)
    factors = to_factors(views, MODULES, "cpu", dtype)
    want = [(torch.from_numpy(views[f"{n}.lora_A"].astype(np.float32)).to(dtype),
             torch.from_numpy(views[f"{n}.lora_B"].astype(np.float32)).to(dtype)) for n in MODULES]
    buf[:] = bytes(len(buf))                                       # the "read transaction" ends, memory reused
    assert not views[f"{MODULES[0]}.lora_A"].any()                 # the views did alias the buffer
    for (a, b), (wa, wb) in zip(factors, want):
        assert a.dtype == b.dtype == dtype
        assert torch.equal(a, wa) and torch.equal(b, wb)


def test_to_factors_keeps_module_order_and_shapes():
    factors = to_factors(stored_adapter(), MODULES[::-1], "cpu", torch.float32)
    assert [(tuple(a.shape), tuple(b.shape)) for a, b in factors] == [((2, 6), (4, 2)), ((2, 4), (6, 2))]


def test_to_factors_names_a_missing_tensor():
    tensors = stored_adapter()
    del tensors[f"{MODULES[1]}.lora_B"]
    with pytest.raises(ValueError, match=re.escape(f"adapter lacks tensor {MODULES[1]}.lora_B")):
        to_factors(tensors, MODULES, "cpu", torch.float32)


def factors_of(nbytes: int):
    """One module's (A, B) in float32 totalling ``nbytes``."""
    n = nbytes // 8
    return [(torch.zeros(1, n), torch.zeros(n, 1))]


def test_cache_returns_what_was_put_and_counts_hits_and_misses():
    cache = AdapterCache(max_bytes=1000)
    f = factors_of(80)
    assert cache.get("a") is None
    cache.put("a", f)
    assert cache.get("a") is f
    assert cache.get("a") is f
    assert cache.get("b") is None
    assert (cache.hits, cache.misses) == (2, 2)


def test_cache_evicts_least_recently_used_beyond_max_bytes():
    cache = AdapterCache(max_bytes=200)
    fa, fb, fc = factors_of(80), factors_of(80), factors_of(80)
    cache.put("a", fa)
    cache.put("b", fb)
    cache.get("a")                       # a is now more recent than b
    cache.put("c", fc)                   # 240 > 200 bytes: b goes
    assert cache.get("b") is None
    assert cache.get("a") is fa and cache.get("c") is fc


def test_cache_discard_removes_an_entry_and_frees_its_bytes():
    cache = AdapterCache(max_bytes=160)
    fa, fb, fc = factors_of(80), factors_of(80), factors_of(80)
    cache.put("a", fa)
    cache.put("b", fb)
    cache.discard("a")
    cache.discard("never-cached")        # not an error
    assert cache.get("a") is None
    cache.put("c", fc)                   # fits in the bytes a gave back: nothing evicted
    assert cache.get("b") is fb and cache.get("c") is fc


def test_cache_putting_a_key_again_does_not_count_its_bytes_twice():
    cache = AdapterCache(max_bytes=160)
    fa, fb = factors_of(80), factors_of(80)
    cache.put("a", fa)
    cache.put("a", fa)
    cache.put("b", fb)
    assert cache.get("a") is fa and cache.get("b") is fb


def test_cache_skips_an_adapter_larger_than_the_whole_cache():
    cache = AdapterCache(max_bytes=100)
    small = factors_of(80)
    cache.put("small", small)
    cache.put("huge", factors_of(400))
    assert cache.get("huge") is None
    assert cache.get("small") is small   # and it evicted nothing to try


def test_merging_flat_adapters_equals_concatenating_their_factors():
    rng = np.random.default_rng(0)
    adapters = [to_factors({k: rng.standard_normal(v.shape).astype(np.float16) for k, v in stored_adapter().items()},
                           MODULES, "cpu", torch.float32) for _ in range(4)]
    questions = [[adapters[0], adapters[1], adapters[2]], [adapters[3]], []]     # ragged: zero padding
    fast = merge_flat(questions, "cpu", torch.float32, scale=2.5)
    slow = [(a, b * 2.5) for a, b in merge_factors([[list(ad) for ad in q] for q in questions], "cpu", torch.float32)]
    assert len(fast) == len(slow) == len(MODULES)
    for (fa, fb), (sa, sb) in zip(fast, slow):
        assert fa.shape == sa.shape and fb.shape == sb.shape
        assert torch.equal(fa, sa) and torch.equal(fb, sb)


def test_stored_bytes_read_as_flat_factors_equal_the_decoded_arrays():
    adapter = stored_adapter()
    buf = memoryview(encode_tensors(adapter))
    fast = from_stored(buf, MODULES, "cpu", torch.float32)
    slow = to_factors(decode_tensors(buf), MODULES, "cpu", torch.float32)
    for (fa, fb), (sa, sb) in zip(fast, slow):
        assert torch.equal(fa, sa) and torch.equal(fb, sb)
    mixed = merge_flat([[fast, slow]], "cpu", torch.float32)      # layouts differ: merged all the same
    same = merge_flat([[fast, fast]], "cpu", torch.float32)
    for (ma, mb), (sa, sb) in zip(mixed, same):
        assert ma.shape == (1, 4, ma.shape[2]) and torch.equal(ma, sa) and torch.equal(mb, sb)


def test_stored_bytes_with_a_flipped_bit_are_refused():
    raw = bytearray(encode_tensors(stored_adapter()))
    raw[-1] ^= 1
    with pytest.raises(CorruptData):
        from_stored(memoryview(raw), MODULES, "cpu", torch.float32)


def test_per_question_scales_scale_each_questions_b_factors_only():
    rng = np.random.default_rng(1)
    ads = [to_factors({k: rng.standard_normal(v.shape).astype(np.float16) for k, v in stored_adapter().items()},
                      MODULES, "cpu", torch.float32) for _ in range(3)]
    merged = merge_flat([[ads[0], ads[1]], [ads[2]]], "cpu", torch.float32, scale=[0.5, 3.0])
    plain = merge_flat([[ads[0], ads[1]], [ads[2]]], "cpu", torch.float32)
    for (a, b), (pa, pb) in zip(merged, plain):
        assert torch.equal(a, pa)
        assert torch.allclose(b[0], pb[0] * 0.5) and torch.allclose(b[1], pb[1] * 3.0)


def test_rank_weights_scale_each_adapters_b_by_its_weight_in_both_merge_paths():
    rng = np.random.default_rng(1)
    adapters = [to_factors({k: rng.standard_normal(v.shape).astype(np.float16) for k, v in stored_adapter().items()},
                           MODULES, "cpu", torch.float32) for _ in range(3)]
    questions, weights = [[adapters[0], adapters[1], adapters[2]], [adapters[1]]], [[0.5, 0.3, 0.2], [1.0]]
    fast = merge_flat(questions, "cpu", torch.float32, scale=2.0, weights=weights)
    scaled = [[[(a, b * w) for a, b in ad] for ad, w in zip(q, ws)] for q, ws in zip(questions, weights)]
    want = [(a, b * 2.0) for a, b in merge_factors(scaled, "cpu", torch.float32)]
    for (fa, fb), (sa, sb) in zip(fast, want):
        torch.testing.assert_close(fa, sa)
        torch.testing.assert_close(fb, sb)


def test_rank_weights_favour_the_first_hit_and_sum_to_one():
    from paramdb.config import rank_weights

    w = rank_weights(3)
    assert w[0] > w[1] > w[2] and abs(sum(w) - 1) < 1e-12 and rank_weights(1) == [1.0]
