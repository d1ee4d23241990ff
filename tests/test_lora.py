"""The LoRA side path: y = W x + s·B(Ax) on each target Linear, per-row factors, nothing left behind."""
from __future__ import annotations

import pytest
import torch
from transformers import LlamaForCausalLM

from conftest import make_tiny_lm
from paramdb.knowledge.lora import SidePath, find_targets, merge_factors, side_path

RANK, SCALE = 2, 2.0


def random_adapter(model, seed: int, rank: int = RANK) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per target module (A [r, in], B [out, r]), both nonzero so the update is visible."""
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(rank, m.in_features, generator=g) * 0.2, torch.randn(m.out_features, rank, generator=g) * 0.2)
            for _, m in find_targets(model)]


def merged_copy(model, adapters, scale: float = SCALE):
    """A hook-free copy of ``model`` with W' = W + s·Σ B@A written into each target's weight."""
    copy = LlamaForCausalLM(model.config).eval().requires_grad_(False)
    copy.load_state_dict(model.state_dict())
    with torch.no_grad():
        for i, (_, m) in enumerate(find_targets(copy)):
            for ad in adapters:
                a, b = ad[i]
                m.weight += scale * (b @ a)
    return copy


def token_ids(seed: int, batch: int = 1, length: int = 9) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1000, 5000, (batch, length), generator=g)


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


class TwoLinears(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.up_proj = torch.nn.Linear(5, 7, dtype=torch.float64)
        self.other = torch.nn.Linear(7, 7, dtype=torch.float64)   # not a target: left alone

    def forward(self, x):
        return self.up_proj(x)


def test_side_path_adds_scaled_low_rank_term_to_a_linear():
    torch.manual_seed(0)
    net = TwoLinears()
    sp = SidePath(net)
    assert [n for n, _ in sp.modules] == ["up_proj"]
    x = torch.randn(3, 4, 5, dtype=torch.float64)
    a, b = torch.randn(2, 5, dtype=torch.float64), torch.randn(7, 2, dtype=torch.float64)
    sp.set([(a, b)], scale=1.5)
    got = net(x)
    want = x @ net.up_proj.weight.T + net.up_proj.bias + 1.5 * ((x @ a.T) @ b.T)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)


def test_set_factors_equals_model_with_merged_weights(tiny_lm):
    model = tiny_lm.model
    ad = random_adapter(model, seed=1)
    ids = token_ids(0, batch=2)
    base = logits(model, ids)
    with side_path(model).applied(ad, SCALE):
        adapted = logits(model, ids)
    assert not torch.allclose(adapted, base, atol=1e-3)          # the adapter does change the output
    torch.testing.assert_close(adapted, logits(merged_copy(model, [ad]), ids), atol=1e-5, rtol=0)


def test_merge_factors_concatenation_equals_sum_of_updates(tiny_lm):
    model = tiny_lm.model
    ads = [random_adapter(model, seed=s) for s in (1, 2, 3)]
    merged = merge_factors([ads], "cpu", torch.float32)
    for i, (a_cat, b_cat) in enumerate(merged):
        assert a_cat.shape[:2] == (1, 3 * RANK) and b_cat.shape[::2] == (1, 3 * RANK)
        summed = sum(ad[i][1] @ ad[i][0] for ad in ads)
        torch.testing.assert_close(b_cat[0] @ a_cat[0], summed, atol=1e-6, rtol=0)
    ids = token_ids(1)
    with side_path(model).applied(merged, SCALE):
        adapted = logits(model, ids)
    torch.testing.assert_close(adapted, logits(merged_copy(model, ads), ids), atol=1e-5, rtol=0)


def test_per_row_factors_match_each_prompt_run_alone(tiny_lm):
    model = tiny_lm.model
    ad0, ad1 = random_adapter(model, seed=4), random_adapter(model, seed=5)
    ids = token_ids(2, batch=2)
    sp = side_path(model)
    with sp.applied(merge_factors([[ad0], [ad1]], "cpu", torch.float32), SCALE):
        both = logits(model, ids)
    for row, ad in ((0, ad0), (1, ad1)):
        with sp.applied(merge_factors([[ad]], "cpu", torch.float32), SCALE):
            alone = logits(model, ids[row:row + 1])
        torch.testing.assert_close(both[row], alone[0], atol=1e-5, rtol=0)
    assert not torch.allclose(both[0], logits(model, ids[:1])[0], atol=1e-3)


def test_zero_padding_rows_of_merge_factors_add_nothing(tiny_lm):
    model = tiny_lm.model
    ad1, ad2, ad3 = (random_adapter(model, seed=s) for s in (6, 7, 8))
    merged = merge_factors([[ad1, ad2], [ad3], []], "cpu", torch.float32)
    for a, b in merged:                                   # rank 2r; rows 1 and 2 are zero-padded
        assert a.shape[1] == 2 * RANK
        assert not a[1, RANK:].any() and not b[1, :, RANK:].any()
        assert not a[2].any() and not b[2].any()
    ids = token_ids(3, batch=3)
    sp = side_path(model)
    with sp.applied(merged, SCALE):
        batch = logits(model, ids)
    with sp.applied(merge_factors([[ad3]], "cpu", torch.float32), SCALE):
        alone3 = logits(model, ids[1:2])
    torch.testing.assert_close(batch[1], alone3[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(batch[2], logits(model, ids[2:3])[0], atol=1e-5, rtol=0)


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_bit_identical(model, state_before):
    after = model.state_dict()
    assert after.keys() == state_before.keys()
    for k, v in state_before.items():
        assert torch.equal(after[k], v), k


def test_clear_leaves_outputs_and_state_dict_bit_identical(tiny_lm):
    model = tiny_lm.model
    ids = token_ids(4)
    sp = side_path(model)
    before, state = logits(model, ids), _snapshot(model)
    sp.set(random_adapter(model, seed=9), SCALE)
    assert not torch.equal(logits(model, ids), before)
    sp.clear()
    assert torch.equal(logits(model, ids), before)
    _assert_bit_identical(model, state)


def test_applied_leaves_model_bit_identical_even_when_the_block_raises(tiny_lm):
    model = tiny_lm.model
    ids = token_ids(5)
    before, state = logits(model, ids), _snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        with side_path(model).applied(random_adapter(model, seed=10), SCALE):
            assert not torch.equal(logits(model, ids), before)
            raise RuntimeError("boom")
    assert torch.equal(logits(model, ids), before)
    _assert_bit_identical(model, state)


def test_side_path_is_installed_once_so_the_delta_is_added_once():
    lm = make_tiny_lm()                                   # a model with no side path yet
    model = lm.model
    first, second = side_path(model), side_path(model)
    assert first is second
    assert all(len(m._forward_hooks) == 1 for _, m in find_targets(model))
    ad = random_adapter(model, seed=11)
    ids = token_ids(6)
    with second.applied(ad, SCALE):
        adapted = logits(model, ids)
    torch.testing.assert_close(adapted, logits(merged_copy(model, [ad]), ids), atol=1e-5, rtol=0)


def test_set_refuses_factors_for_the_wrong_number_of_modules(tiny_lm):
    sp = side_path(tiny_lm.model)
    with pytest.raises(ValueError, match=f"expected factors for {len(sp.modules)} modules, got 1"):
        sp.set(random_adapter(tiny_lm.model, seed=12)[:1], SCALE)


def test_find_targets_refuses_a_model_without_target_linears():
    with pytest.raises(ValueError, match="gate_proj"):
        find_targets(torch.nn.Sequential(torch.nn.Linear(2, 2)))
