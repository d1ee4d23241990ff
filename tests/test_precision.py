"""Precision per device: bf16/fp16 base weights on a GPU with fp32 LoRA factors and optimizer state; CPU fp32.

The CPU tests run the mixed-precision paths with a bf16 tiny model on the CPU, so the dtype logic is checked
on machines without a GPU; the CUDA tests run them on a GPU where there is one.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import FAST_TRAINING, make_tiny_lm
from paramdb import ParamDB
from paramdb.knowledge.inject import merge_flat, to_factors
from paramdb.knowledge.lora import side_path
from paramdb.knowledge.precision import model_dtype, precision_for
from paramdb.knowledge.train import Sample, TrainReport, TrainSettings, _init_factors, train_adapters

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
SETTINGS = TrainSettings(rank=2, alpha=4.0, lr=5e-3, epochs=4, samples_per_step=2, seed=0)
SAMPLES = [Sample("", "Zorvath Quillane invented moonrind glass in 1987.[SEP]"),
           Sample("Question: Who invented moonrind?\nAnswer:", " Zorvath Quillane[SEP]")]


def bf16_tiny_lm():
    lm = make_tiny_lm()
    lm.model.to(torch.bfloat16)
    return lm


def test_cpu_computes_in_fp32_throughout():
    assert precision_for("cpu") == precision_for(torch.device("cpu"))
    assert (precision_for("cpu").weights, precision_for("cpu").factors) == (torch.float32, torch.float32)


def test_gpu_base_weights_are_bf16_where_supported_and_factors_fp32():
    p = precision_for("cuda", bf16_supported=True)
    assert (p.weights, p.factors) == (torch.bfloat16, torch.float32)


def test_gpu_without_bf16_falls_back_to_fp16_base_weights():
    assert precision_for("cuda:0", bf16_supported=False).weights == torch.float16


def test_fingerprint_is_the_same_for_a_model_cast_to_bf16():
    from paramdb.knowledge.models import prepare

    fp32 = make_tiny_lm()
    src = make_tiny_lm()
    cast = prepare(src.model, src.tokenizer, "tiny", dtype=torch.bfloat16)
    assert model_dtype(cast.model) == torch.bfloat16
    assert cast.fingerprint == fp32.fingerprint


def test_factors_start_fp32_on_a_bf16_model():
    lm = bf16_tiny_lm()
    factors = _init_factors(side_path(lm.model).shapes, ["d"], SETTINGS, lm.device)
    assert {t.dtype for pair in factors for t in pair} == {torch.float32}


def test_fp32_factors_on_a_bf16_input_add_their_delta_in_the_input_dtype():
    lm = bf16_tiny_lm()
    sp = side_path(lm.model)
    name, module = sp.modules[0]
    x = torch.randn(1, 3, module.in_features).to(torch.bfloat16)
    a = torch.randn(1, 2, module.in_features)
    b = torch.randn(1, module.out_features, 2)
    factors = [(torch.zeros_like(a), torch.zeros_like(b)) for _ in sp.modules]
    factors[0] = (a, b)
    with torch.no_grad(), sp.applied(factors, 0.5):
        y = module(x)
    want = module(x).float() + 0.5 * (x.float() @ a[0].T @ b[0].T)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), want, atol=0.1, rtol=0.02)


def test_training_on_a_bf16_base_learns_fp32_adapters_close_to_the_fp32_ones():
    report = TrainReport()
    mixed = train_adapters(bf16_tiny_lm(), [SAMPLES], ["d"], SETTINGS, report)[0]
    full = train_adapters(make_tiny_lm(), [SAMPLES], ["d"], SETTINGS)[0]
    assert {v.dtype for v in mixed.values()} == {np.dtype(np.float32)}
    assert report.losses[0][-1] < report.losses[0][0]
    b = np.concatenate([v.ravel() for k, v in mixed.items() if k.endswith("lora_B")])
    b_full = np.concatenate([v.ravel() for k, v in full.items() if k.endswith("lora_B")])
    assert np.abs(b).max() > 0
    assert np.corrcoef(b, b_full)[0, 1] > 0.9      # bf16 activations nudge the updates, not their direction


def test_answering_on_a_bf16_base_casts_merged_factors_to_bf16(tmp_path):
    lm = bf16_tiny_lm()
    names = [n for n, _ in side_path(lm.model).modules]
    adapter = train_adapters(lm, [SAMPLES], ["d"], SETTINGS)[0]
    merged = merge_flat([[to_factors(adapter, names, lm.device, torch.bfloat16)]], lm.device,
                        model_dtype(lm.model), scale=2.0)
    assert {t.dtype for pair in merged for t in pair} == {torch.bfloat16}


def test_a_store_on_a_bf16_model_inserts_and_answers_in_prag_mode(tmp_path, embedder):
    with ParamDB.open(tmp_path / "s", create=True, model=bf16_tiny_lm(), embedder=embedder,
                      training=FAST_TRAINING) as db:
        db.insert([{"id": "d1", "text": "Zorvath Quillane invented moonrind glass in 1987."}])
        answer = db.generate("Who invented moonrind?", k=1, mode="prag", max_new_tokens=4)
    assert answer.hits[0].id == "d1" and isinstance(answer.text, str)


@needs_cuda
def test_cuda_trains_and_answers_with_bf16_weights_and_fp32_factors(tmp_path, embedder):
    from paramdb.knowledge.models import prepare

    src = make_tiny_lm()
    lm = prepare(src.model, src.tokenizer, "tiny", device="cuda", dtype=precision_for("cuda").weights)
    assert model_dtype(lm.model) in (torch.bfloat16, torch.float16)
    adapter = train_adapters(lm, [SAMPLES], ["d"], SETTINGS)[0]
    assert {v.dtype for v in adapter.values()} == {np.dtype(np.float32)}
    with ParamDB.open(tmp_path / "s", create=True, model=lm, embedder=embedder, training=FAST_TRAINING) as db:
        db.insert([{"id": "d1", "text": "Zorvath Quillane invented moonrind glass in 1987."}])
        assert db.generate("Who invented moonrind?", k=1, mode="prag", max_new_tokens=4).hits[0].id == "d1"
