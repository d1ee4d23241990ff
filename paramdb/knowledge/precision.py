"""Which dtypes the base model and the LoRA factors use on a device.

On a GPU the base model runs in bf16 (fp16 where the GPU lacks bf16): half the memory and several times the
matmul rate of fp32, and the frozen base weights lose nothing that matters by it. The LoRA factors and
Adam's moments stay fp32 in training: their updates are ~lr x 1e-3 of their size, below bf16's resolution,
so in bf16 most steps would round away. At answer time the merged factors are cast once to the model's
dtype, so the side path computes in the dtype of its input. The CPU path is fp32 throughout (CPUs gain
little from bf16 matmuls, and it is what every calibration figure was measured with).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Precision:
    """``weights``: the base model's dtype; ``factors``: trained LoRA factors and optimizer state."""

    weights: torch.dtype
    factors: torch.dtype = torch.float32


def precision_for(device: torch.device | str, bf16_supported: bool | None = None) -> Precision:
    """The dtypes for ``device``. ``bf16_supported`` overrides the GPU probe (tests decide it without a GPU)."""
    device = torch.device(device)
    if device.type != "cuda":
        return Precision(weights=torch.float32)
    if bf16_supported is None:
        bf16_supported = torch.cuda.is_bf16_supported()
    return Precision(weights=torch.bfloat16 if bf16_supported else torch.float16)


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype the model computes in (that of its first floating-point parameter)."""
    return next(p.dtype for p in model.parameters() if p.is_floating_point())
