"""The LoRA side path: y = W x + s · B (A x), installed once as forward hooks on the target Linears.

One mechanism serves training and answering. Each row of a batch carries its own low-rank factors
(A: [b, R, in], B: [b, out, R]): in training R = r and the factors are gathered from the stacked
parameters of N documents by each row's document index; in answering R = k·r, the concatenation of the
k retrieved adapters, which equals the sum of their updates (ΔW = s·Σ BᵢAᵢ = s·[B₁…B_k][A₁;…;A_k]).
The base weights are never copied or modified; switching documents is swapping tensors.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch

DEFAULT_TARGETS = ("gate_proj", "up_proj", "down_proj")


def tensor_names(module: str) -> tuple[str, str]:
    """The stored names of one target module's factors, A [r, in] and B [out, r]: the one place the adapter
    format's tensor names are spelled (training writes them, answering and migrations read them)."""
    return f"{module}.lora_A", f"{module}.lora_B"


@dataclass(frozen=True)
class TargetShape:
    name: str
    in_features: int
    out_features: int


def find_targets(model: torch.nn.Module, targets=DEFAULT_TARGETS) -> list[tuple[str, torch.nn.Linear]]:
    """The Linear modules whose last name part is one of ``targets``, in model order."""
    found = [(n, m) for n, m in model.named_modules()
             if isinstance(m, torch.nn.Linear) and n.rsplit(".", 1)[-1] in targets]
    if not found:
        raise ValueError(f"model has no Linear modules named {', '.join(targets)}")
    return found


class SidePath:
    """Forward hooks that add s·B(Ax) to each target's output while factors are set; inert otherwise."""

    def __init__(self, model: torch.nn.Module, targets=DEFAULT_TARGETS):
        self.modules = find_targets(model, targets)
        self.shapes = [TargetShape(n, m.in_features, m.out_features) for n, m in self.modules]
        self._factors: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(self.modules)
        self.scale = 1.0
        self._handles = [m.register_forward_hook(self._hook(i)) for i, (_, m) in enumerate(self.modules)]

    def _hook(self, i: int):
        def add_delta(_module, inputs, output):
            f = self._factors[i]
            if f is None:
                return output
            a_t, sb_t = f
            x = inputs[0]
            if x.dtype != a_t.dtype:
                # Training on a bf16/fp16 base with fp32 factors: the side path computes in the activations'
                # dtype (casting r-wide factors, not [tokens, width] activations); the casts' backward hands
                # fp32 gradients to the fp32 factors.
                a_t, sb_t = a_t.to(x.dtype), sb_t.to(x.dtype)
            return output + torch.matmul(torch.matmul(x, a_t), sb_t)
        return add_delta

    def set(self, factors: list[tuple[torch.Tensor, torch.Tensor]], scale: float) -> None:
        """Factors per target in ``self.modules`` order: A [b or 1, R, in], B [b or 1, out, R], or None for a
        module left as it is."""
        if len(factors) != len(self.modules):
            raise ValueError(f"expected factors for {len(self.modules)} modules, got {len(factors)}")
        # Stored as Aᵀ and (s·B)ᵀ: the hook runs once per module per generated token, so the scaling and
        # transposes are done here, once per switch, instead of there.
        self._factors = [None if f is None else
                         (f[0].transpose(-1, -2), (f[1] if scale == 1.0 else f[1] * scale).transpose(-1, -2))
                         for f in factors]
        self.scale = scale

    def clear(self) -> None:
        self._factors = [None] * len(self.modules)

    @contextmanager
    def applied(self, factors, scale: float):
        self.set(factors, scale)
        try:
            yield
        finally:
            self.clear()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def side_path(model: torch.nn.Module, targets=DEFAULT_TARGETS) -> SidePath:
    """The model's one SidePath, installed on first use (installing twice would add the delta twice)."""
    sp = getattr(model, "_paramdb_side_path", None)
    if sp is None:
        sp = SidePath(model, targets)
        model._paramdb_side_path = sp
    return sp


def merge_factors(adapters: list[list[list[tuple[torch.Tensor, torch.Tensor]]]], device, dtype
                  ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Batch of questions → per-module batched factors.

    ``adapters[q]`` is the list of question q's retrieved adapters, each a per-module list of (A [r,in],
    B [out,r]). Concatenating along the rank gives A [b, R, in], B [b, out, R]; questions with fewer
    adapters are padded with zero rank rows, which add nothing.
    """
    ranks = [sum(ad[0][0].shape[0] for ad in q) for q in adapters]
    rank = max(ranks)
    ref = next(q for q in adapters if q)[0]
    out = []
    for m, (ref_a, ref_b) in enumerate(ref):
        a_rows, b_rows = [], []
        for q, r in zip(adapters, ranks):
            a_parts = [ad[m][0] for ad in q]
            b_parts = [ad[m][1] for ad in q]
            if r < rank:
                a_parts.append(ref_a.new_zeros(rank - r, ref_a.shape[1]))
                b_parts.append(ref_b.new_zeros(ref_b.shape[0], rank - r))
            a_rows.append(torch.cat(a_parts, 0))
            b_rows.append(torch.cat(b_parts, 1))
        out.append((torch.stack(a_rows).to(device=device, dtype=dtype),
                    torch.stack(b_rows).to(device=device, dtype=dtype)))
    return out
