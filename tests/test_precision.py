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
from paramdb.errors import InvalidInput
from paramdb.knowledge.precision import ENV_VAR, chosen, cpu_has_bf16_matmul, model_dtype, precision_for
from paramdb.knowledge.train import Sample, TrainReport, TrainSettings, _init_factors, train_adapters
from paramdb.engine.adapters import factors_for_ids

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
SETTINGS = TrainSettings(rank=2, alpha=4.0, lr=5e-3, epochs=4, samples_per_step=2, seed=0)
SAMPLES = [Sample("", "Zorvath Quillane invented moonrind glass in 1987.[SEP]"),
           Sample("Question: Who invented moonrind?\nAnswer:", " Zorvath Quillane[SEP]")]


def bf16_tiny_lm():
    lm = make_tiny_lm()
    lm.model.to(torch.bfloat16)
    return lm


def test_auto_keeps_a_cpu_without_bf16_matrix_units_in_fp32_throughout():
    p = precision_for("cpu", bf16_supported=False)
    assert p == precision_for(torch.device("cpu"), "auto", bf16_supported=False)
    assert (p.weights, p.factors) == (torch.float32, torch.float32)


def test_auto_runs_a_cpu_with_bf16_matrix_units_in_bf16_with_fp32_factors():
    p = precision_for("cpu", "auto", bf16_supported=True)
    assert (p.weights, p.factors) == (torch.bfloat16, torch.float32)


def test_auto_on_this_cpu_follows_its_hardware_probe():
    want = torch.bfloat16 if cpu_has_bf16_matmul() else torch.float32
    assert precision_for("cpu").weights == want


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_fp32_and_bf16_are_obeyed_whatever_the_hardware(device):
    for supported in (True, False):
        assert precision_for(device, "fp32", bf16_supported=supported).weights == torch.float32
        assert precision_for(device, "bf16", bf16_supported=supported).weights == torch.bfloat16


def test_an_unknown_precision_is_refused_naming_the_valid_ones():
    with pytest.raises(InvalidInput, match="unknown precision 'fp8'; valid: auto, fp32, bf16"):
        precision_for("cpu", "fp8")


def test_the_caller_beats_the_environment_which_beats_the_store_setting(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert chosen(None, None) == "auto"
    assert chosen(None, "bf16") == "bf16"
    monkeypatch.setenv(ENV_VAR, "fp32")
    assert chosen(None, "bf16") == "fp32"
    assert chosen("bf16", "auto") == "bf16"
    monkeypatch.setenv(ENV_VAR, "half")
    with pytest.raises(InvalidInput, match="PARAMDB_PRECISION value 'half'"):
        chosen(None, "auto")


def test_a_bad_environment_precision_refuses_to_open_and_leaves_the_store_closed(tmp_path, tiny_lm, embedder,
                                                                                 monkeypatch):
    ParamDB.open(tmp_path / "s", create=True, model=tiny_lm, embedder=embedder, training=FAST_TRAINING).close()
    monkeypatch.setenv(ENV_VAR, "fp64")
    with pytest.raises(InvalidInput, match="fp64"):
        ParamDB.open(tmp_path / "s", model=tiny_lm, embedder=embedder)
    monkeypatch.delenv(ENV_VAR)
    with ParamDB.open(tmp_path / "s", model=tiny_lm, embedder=embedder) as db:   # the lock was released
        assert len(db) == 0


def test_a_precision_given_at_creation_is_the_stores_setting(tmp_path, tiny_lm, embedder, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    ParamDB.open(tmp_path / "s", create=True, model=tiny_lm, embedder=embedder, training=FAST_TRAINING,
                 precision="bf16").close()
    with ParamDB.open(tmp_path / "s", model=tiny_lm, embedder=embedder) as db:
        assert db.config.precision == "bf16"
        assert db._models.precision == "bf16"
    with ParamDB.open(tmp_path / "s", model=tiny_lm, embedder=embedder, precision="fp32") as db:
        assert db._models.precision == "fp32"


def test_a_precision_given_at_creation_beats_the_environment(tmp_path, embedder, monkeypatch):
    folder = tmp_path / "tiny-llama"
    lm = make_tiny_lm()
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    monkeypatch.setenv(ENV_VAR, "bf16")
    with ParamDB.open(tmp_path / "s", create=True, model=str(folder), embedder=embedder,
                      training=FAST_TRAINING, precision="fp32") as db:
        assert model_dtype(db.handle.models.lm.model) == torch.float32
        assert db._models.precision == "fp32"


def _text_loss(lm, text: str, factors=None) -> float:
    ids = lm.tokenizer(text, return_tensors="pt").input_ids
    sp = side_path(lm.model)
    with torch.no_grad():
        if factors is None:
            logits = lm.model(input_ids=ids).logits
        else:
            with sp.applied(factors, 1.0):
                logits = lm.model(input_ids=ids).logits
    return torch.nn.functional.cross_entropy(logits[0, :-1].float(), ids[0, 1:]).item()


def test_a_store_written_in_one_precision_answers_in_the_other(tmp_path, embedder):
    fact = {"id": "d1", "text": "Zorvath Quillane invented moonrind glass in 1987."}
    learn = {"epochs": 6, "rank": 2, "alpha": 4.0, "lr": 2e-2}
    for written, answering in ((make_tiny_lm(), bf16_tiny_lm()), (bf16_tiny_lm(), make_tiny_lm())):
        path = tmp_path / f"s-{model_dtype(written.model)}"
        with ParamDB.open(path, create=True, model=written, embedder=embedder, training=learn) as db:
            db.insert([fact])
        with ParamDB.open(path, model=answering, embedder=embedder) as db:
            answer = db.generate("Who invented moonrind?", k=1, mode="prag", max_new_tokens=6)
            (factors,) = factors_for_ids(db.handle.store, db.handle.models.lm, ["d1"])
        assert answer.hits[0].id == "d1"
        merged = merge_flat([[factors]], answering.device, model_dtype(answering.model), scale=learn["alpha"] / 2)
        assert _text_loss(answering, fact["text"], merged) < _text_loss(answering, fact["text"]) - 0.05


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
