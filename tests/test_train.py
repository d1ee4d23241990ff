"""Batched per-document LoRA training: N documents together give the adapters each would get alone."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from conftest import make_tiny_lm
from paramdb.knowledge.lora import side_path
from paramdb.knowledge.train import (Sample, TrainReport, TrainSettings, _encode, _init_factors, _token_chunks,
                                     lowest_trained_layer,
                                     train_adapters, trained_modules)

SETTINGS = TrainSettings(rank=2, alpha=4.0, lr=5e-3, epochs=2, samples_per_step=2, seed=0)
EOS = "[SEP]"

TEXTS = {
    "cats": ["Cats sleep sixteen hours a day.", "A cat purrs when it is content.", "Cats land on their feet."],
    "rust": ["Rust has no garbage collector.", "The borrow checker enforces ownership.", "Cargo builds Rust code.",
             "Rust compiles to native code.", "Traits give Rust its generics."],
    "moon": ["The moon orbits the earth."],
    "planets": ["Mars is red.", "Venus is hot.", "Jupiter is big."],
}


def doc(name: str, n: int | None = None) -> list[Sample]:
    lines = TEXTS[name][:n]
    return [Sample("" if i % 2 == 0 else "Question: tell me a fact\nAnswer:", t + EOS) for i, t in enumerate(lines)]


def assert_same_adapter(got: dict, want: dict, atol: float = 1e-5) -> None:
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=atol, rtol=0, err_msg=name)


def mean_token_loss(lm, samples: list[Sample], adapter: dict | None, scale: float) -> float:
    """The document's mean token loss over its targets, with the adapter applied (or not)."""
    sp = side_path(lm.model)
    names = [n for n, _ in sp.modules]
    total, count = 0.0, 0
    for ids, labels in _encode(lm.tokenizer, samples, SETTINGS.max_length):
        ids_t, labels_t = torch.tensor([ids]), torch.tensor(labels[1:])
        with torch.no_grad():
            if adapter is None:
                out = lm.model(input_ids=ids_t).logits
            else:
                factors = [(torch.from_numpy(adapter[f"{n}.lora_A"]), torch.from_numpy(adapter[f"{n}.lora_B"]))
                           for n in names]
                with sp.applied(factors, scale):
                    out = lm.model(input_ids=ids_t).logits
        keep = labels_t != -100
        total += torch.nn.functional.cross_entropy(out[0, :-1][keep], labels_t[keep], reduction="sum").item()
        count += int(keep.sum())
    return total / count


def test_training_three_documents_together_equals_training_each_alone(tiny_lm):
    docs, keys = [doc("cats"), doc("rust", 3), doc("planets")], ["cats", "rust", "planets"]   # 3 samples each
    together = train_adapters(tiny_lm, docs, keys, SETTINGS)
    for d, k, got in zip(docs, keys, together):
        assert_same_adapter(got, train_adapters(tiny_lm, [d], [k], SETTINGS)[0])
    first = next(iter(together[0]))
    assert not np.allclose(together[0][first], together[1][first])   # different documents, different adapters


def test_batched_training_equals_alone_when_documents_have_different_sample_counts(tiny_lm):
    docs, keys = [doc("moon"), doc("cats"), doc("rust")], ["moon", "cats", "rust"]   # 1, 3 and 5 samples
    together = train_adapters(tiny_lm, docs, keys, SETTINGS)
    for d, k, got in zip(docs, keys, together):
        assert_same_adapter(got, train_adapters(tiny_lm, [d], [k], SETTINGS)[0])


def test_adapter_is_independent_of_batch_companions_and_position(tiny_lm):
    x = doc("cats", 2)
    _, with_rust = train_adapters(tiny_lm, [doc("rust"), x], ["rust", "x"], SETTINGS)
    with_moon, _ = train_adapters(tiny_lm, [x, doc("moon")], ["x", "moon"], SETTINGS)
    assert_same_adapter(with_rust, with_moon)


def test_initial_factors_come_from_the_documents_own_key_and_seed(tiny_lm):
    shapes = side_path(tiny_lm.model).shapes
    (a, _), *_ = _init_factors(shapes, ["x", "y", "x"], SETTINGS, "cpu")
    (a_seed1, _), *_ = _init_factors(shapes, ["x"], dataclasses.replace(SETTINGS, seed=1), "cpu")
    assert torch.equal(a[0], a[2])
    assert not torch.equal(a[0], a[1])
    assert not torch.equal(a[0], a_seed1[0])


def test_adapter_has_rank_by_in_and_out_by_rank_factors_for_every_target(tiny_lm):
    (adapter,) = train_adapters(tiny_lm, [doc("moon")], ["moon"], SETTINGS)
    modules = side_path(tiny_lm.model).modules
    assert len(modules) == 2 * 3                                   # 2 layers × gate/up/down
    assert set(adapter) == {f"{n}.{f}" for n, _ in modules for f in ("lora_A", "lora_B")}
    for name, m in modules:
        assert adapter[f"{name}.lora_A"].shape == (SETTINGS.rank, m.in_features)
        assert adapter[f"{name}.lora_B"].shape == (m.out_features, SETTINGS.rank)
        assert adapter[f"{name}.lora_A"].dtype == adapter[f"{name}.lora_B"].dtype == np.float32


def test_untrained_adapter_has_zero_b_and_leaves_outputs_unchanged(tiny_lm):
    sp = side_path(tiny_lm.model)
    initial = _init_factors(sp.shapes, ["cats"], SETTINGS, "cpu")
    for a, b in initial:
        assert a.any() and not b.any()
    factors = [(a[0].detach(), b[0].detach()) for a, b in initial]
    ids = torch.tensor([tiny_lm.tokenizer("Cats land on their feet.", add_special_tokens=False).input_ids])
    with torch.no_grad():
        base = tiny_lm.model(input_ids=ids).logits
        with sp.applied(factors, SETTINGS.scale):
            adapted = tiny_lm.model(input_ids=ids).logits
    assert torch.equal(adapted, base)


def test_training_lowers_the_loss_on_the_documents_samples(tiny_lm):
    samples = doc("rust")
    settings = dataclasses.replace(SETTINGS, epochs=8, lr=2e-2)
    (adapter,) = train_adapters(tiny_lm, [samples], ["rust"], settings)
    before = mean_token_loss(tiny_lm, samples, None, settings.scale)
    after = mean_token_loss(tiny_lm, samples, adapter, settings.scale)
    assert after < before - 0.2, (before, after)         # a random 2-layer model: ~10.37 → ~10.04


def test_training_refuses_a_document_without_samples(tiny_lm):
    with pytest.raises(ValueError, match="at least one training sample"):
        train_adapters(tiny_lm, [doc("moon"), []], ["moon", "empty"], SETTINGS)


def test_a_small_token_budget_splits_steps_into_chunks_without_changing_the_adapters(tiny_lm):
    docs, keys = [doc("moon"), doc("cats"), doc("rust")], ["moon", "cats", "rust"]
    longest = max(len(ids) for d in docs for ids, _ in _encode(tiny_lm.tokenizer, d, SETTINGS.max_length))
    whole = train_adapters(tiny_lm, docs, keys, SETTINGS)
    chunked = train_adapters(tiny_lm, docs, keys, dataclasses.replace(SETTINGS, max_batch_tokens=longest))
    for a, b in zip(whole, chunked):
        assert_same_adapter(a, b)


FAST = dataclasses.replace(SETTINGS, epochs=6, lr=2e-2)


def test_report_gives_each_documents_epochs_and_its_real_first_epoch_loss(tiny_lm):
    report = TrainReport()
    train_adapters(tiny_lm, [doc("moon"), doc("cats")], ["moon", "cats"], FAST, report)
    assert report.epochs == [FAST.epochs, FAST.epochs]
    assert [len(x) for x in report.losses] == [FAST.epochs, FAST.epochs]
    # moon has one sample, so its first epoch is one step taken with the untrained (B = 0) adapter
    assert report.losses[0][0] == pytest.approx(mean_token_loss(tiny_lm, doc("moon"), None, FAST.scale), rel=1e-5)
    assert report.losses[0][-1] < report.losses[0][0]


def _threshold_after(losses: list[float], epochs: int) -> float:
    """A stop_loss that the run's losses first fall below at epoch ``epochs``."""
    assert all(a > b for a, b in zip(losses, losses[1:])), losses        # the tiny model's loss falls steadily
    return (losses[epochs - 2] + losses[epochs - 1]) / 2


def test_a_document_stops_after_the_first_epoch_below_stop_loss(tiny_lm):
    full = TrainReport()
    train_adapters(tiny_lm, [doc("rust")], ["rust"], FAST, full)
    stop = _threshold_after(full.losses[0], 3)
    stopped = TrainReport()
    (adapter,) = train_adapters(tiny_lm, [doc("rust")], ["rust"], dataclasses.replace(FAST, stop_loss=stop), stopped)
    assert stopped.epochs == [3]
    assert stopped.losses[0] == pytest.approx(full.losses[0][:3])
    (three_epochs,) = train_adapters(tiny_lm, [doc("rust")], ["rust"], dataclasses.replace(FAST, epochs=3))
    assert_same_adapter(adapter, three_epochs)


def test_stopping_is_per_document_so_batched_still_equals_alone(tiny_lm):
    docs, keys = [doc("moon"), doc("cats"), doc("rust")], ["moon", "cats", "rust"]
    full = TrainReport()
    train_adapters(tiny_lm, [doc("moon")], ["moon"], FAST, full)
    settings = dataclasses.replace(FAST, stop_loss=_threshold_after(full.losses[0], 2))
    report = TrainReport()
    together = train_adapters(tiny_lm, docs, keys, settings, report)
    assert report.epochs[0] == 2 and len(set(report.epochs)) > 1     # documents stopped at different epochs
    for d, k, got in zip(docs, keys, together):
        alone = TrainReport()
        assert_same_adapter(got, train_adapters(tiny_lm, [d], [k], settings, alone)[0])
        assert alone.epochs == [report.epochs[keys.index(k)]]


def _rows(lengths: list[int]) -> list:
    return [(i, ([0] * n, [0] * n)) for i, n in enumerate(lengths)]


def _chunk_tokens(chunk: list) -> int:
    return len(chunk) * max(len(r[1][0]) for r in chunk)


def test_token_chunks_keep_every_row_once_and_stay_within_the_budget():
    lengths = [34, 38, 38, 39, 40, 42, 45, 46, 47, 51, 53, 54, 56, 62, 69, 300]
    chunks = _token_chunks(_rows(lengths), budget=512)
    assert sorted(i for c in chunks for i, _ in c) == list(range(len(lengths)))
    assert all(_chunk_tokens(c) <= 512 for c in chunks if len(c) > 1)
    assert [len(r[1][0]) for r in chunks[-1]] == [300]       # a row alone is never refused


def test_token_chunks_cut_where_padding_costs_more_than_another_chunk():
    short, long_ = [20] * 16, [200] * 4                      # one chunk would pad 16 rows from 20 to 200 tokens
    chunks = _token_chunks(_rows(short + long_), budget=10_000, overhead=48)
    assert [len(c) for c in chunks] == [16, 4]
    assert sum(map(_chunk_tokens, chunks)) == 16 * 20 + 4 * 200
    assert len(_token_chunks(_rows([40, 41, 42, 43]), budget=10_000, overhead=48)) == 1   # not worth a cut


def test_a_sample_longer_than_the_token_budget_is_cut_to_it(tiny_lm, monkeypatch):
    from paramdb.knowledge import train

    seen = []
    real = train._accumulate
    monkeypatch.setattr(train, "_accumulate", lambda bb, h, sp, f, chunk, *rest: seen.append(
        max(len(ids) for _, (ids, _), _ in chunk)) or real(bb, h, sp, f, chunk, *rest))
    huge = [Sample("", "word " * 20_000 + EOS)]
    train_adapters(tiny_lm, [huge], ["huge"], dataclasses.replace(SETTINGS, max_length=100_000,
                                                                 max_batch_tokens=64, epochs=1))
    assert seen and max(seen) <= 64


def test_training_the_top_half_of_layers_leaves_the_lower_modules_update_exactly_zero(tiny_lm):
    settings = dataclasses.replace(SETTINGS, layers=0.5, epochs=4, lr=2e-2)
    (adapter,) = train_adapters(tiny_lm, [doc("rust")], ["rust"], settings)
    names = [n for n, _ in side_path(tiny_lm.model).modules]
    lower = [n for n in names if ".layers.0." in n]
    upper = [n for n in names if ".layers.1." in n]
    assert lower and upper
    for n in lower:
        assert not adapter[f"{n}.lora_A"].any() and not adapter[f"{n}.lora_B"].any(), n
    assert all(adapter[f"{n}.lora_B"].any() for n in upper)
    before = mean_token_loss(tiny_lm, doc("rust"), None, settings.scale)
    assert mean_token_loss(tiny_lm, doc("rust"), adapter, settings.scale) < before - 0.1


def test_cached_frozen_layer_states_give_the_same_adapters_as_the_full_pass():
    lm = make_tiny_lm(context=512)
    four_layers = make_tiny_lm(layers=4)
    settings = dataclasses.replace(SETTINGS, layers=0.5, epochs=3, lr=2e-2, max_batch_tokens=48)
    docs, keys = [doc("rust"), doc("cats")], ["rust", "cats"]
    for model in (lm, four_layers):
        assert lowest_trained_layer([n for n, _ in side_path(model.model).modules],
                                    trained_modules([n for n, _ in side_path(model.model).modules], 0.5)) > 0
        cached, full = TrainReport(), TrainReport()
        with_cache = train_adapters(model, docs, keys, settings, cached)
        without = train_adapters(model, docs, keys, settings, full, cache_frozen=False)
        np.testing.assert_allclose(np.array(cached.losses), np.array(full.losses), rtol=1e-5)
        for a, b in zip(with_cache, without):
            assert_same_adapter(a, b, atol=1e-6)
        assert any(v.any() for v in with_cache[0].values())


def test_the_lower_pass_runs_once_when_frozen_layers_are_cached():
    model = make_tiny_lm(layers=4)
    calls = []
    first = model.model.get_decoder().layers[0]
    handle = first.register_forward_hook(lambda *_: calls.append(1))
    settings = dataclasses.replace(SETTINGS, layers=0.5, epochs=3)
    try:
        train_adapters(model, [doc("rust")], ["rust"], settings)
        cached = len(calls)
        calls.clear()
        train_adapters(model, [doc("rust")], ["rust"], settings, cache_frozen=False)
    finally:
        handle.remove()
    assert cached * 2 < len(calls)          # once per sample chunk, against once per step of every epoch


def test_trained_modules_keeps_the_top_fraction_of_numbered_layers_and_every_unnumbered_module():
    names = [f"model.layers.{i}.mlp.up_proj" for i in range(10)] + ["lm_head"]
    assert trained_modules(names, 0.3) == [False] * 7 + [True] * 3 + [True]
    assert trained_modules(names, 0.01) == [False] * 9 + [True] + [True]      # at least one layer
    assert trained_modules(names, 1.0) == [True] * 11


def test_a_last_epoch_at_zero_learning_rate_changes_nothing(tiny_lm):
    one = dataclasses.replace(SETTINGS, epochs=1, lr_final=0.0)
    two = dataclasses.replace(SETTINGS, epochs=2, lr_final=0.0)      # epoch 1 at lr, epoch 2 at 0
    (a,) = train_adapters(tiny_lm, [doc("cats")], ["cats"], one)
    (b,) = train_adapters(tiny_lm, [doc("cats")], ["cats"], two)
    assert_same_adapter(b, a, atol=0)


def test_a_decaying_learning_rate_gives_another_adapter_than_a_constant_one(tiny_lm):
    (a,) = train_adapters(tiny_lm, [doc("cats")], ["cats"], SETTINGS)
    (b,) = train_adapters(tiny_lm, [doc("cats")], ["cats"], dataclasses.replace(SETTINGS, lr_final=0.1))
    assert any(not np.allclose(a[n], b[n]) for n in a if n.endswith("lora_B"))


@pytest.mark.parametrize("field,value", [("layers", 0), ("layers", 1.5), ("lr_final", -0.1)])
def test_out_of_range_layer_fraction_or_final_learning_rate_is_refused(field, value):
    from paramdb.errors import InvalidInput
    with pytest.raises(InvalidInput, match=field):
        dataclasses.replace(SETTINGS, **{field: value})
