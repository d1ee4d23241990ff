"""Which dtypes the base model and the LoRA factors use on a device.

The frozen base model runs in bf16 wherever the hardware multiplies bf16 matrices natively: CUDA GPUs with
bf16 (fp16 on older ones) and CPUs with AMX-bf16 or AVX512-BF16. There it halves the memory and multiplies
several times faster than fp32, and frozen weights lose nothing that matters by it. A CPU without those
units emulates bf16 through fp32 conversions and multiplies several times *slower* (docs/benchmarks.md), so
``auto`` keeps it in fp32. The LoRA factors and Adam's moments stay fp32 whatever the base: their updates
are ~lr x 1e-3 of their size, below bf16's resolution, so in bf16 most steps would round away.

The choice is a runtime one: the weight fingerprint is taken before the cast (models.prepare) and adapters
are stored in their own dtype, so a store written in one precision answers in the other and moves between
machines. It is made, first that applies: the caller's ``precision=`` (the CLI's ``--precision``), the
``PARAMDB_PRECISION`` environment variable, the store's setting (``paramdb init --precision``), ``auto``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .settings import ENV_VAR, PRECISIONS, check_precision, chosen  # noqa: F401 (re-exported)


@dataclass(frozen=True)
class Precision:
    """``weights``: the base model's dtype; ``factors``: trained LoRA factors and optimizer state."""

    weights: torch.dtype
    factors: torch.dtype = torch.float32


def cpu_has_bf16_matmul() -> bool:
    """True when this CPU multiplies bf16 matrices in hardware (AMX-bf16 tiles or AVX512-BF16)."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    if all(p is not None for p in probes):
        return any(p() for p in probes)
    try:      # an older torch without the probes: the kernel's own flags
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def precision_for(device: torch.device | str, choice: str = "auto", bf16_supported: bool | None = None) -> Precision:
    """The dtypes for ``device`` under ``choice`` (auto, fp32, bf16). ``bf16_supported`` overrides the
    hardware probe (tests decide it without a GPU or an AMX CPU)."""
    check_precision(choice)
    device = torch.device(device)
    if choice == "fp32":
        return Precision(weights=torch.float32)
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported() if bf16_supported is None else bf16_supported
        return Precision(weights=torch.bfloat16 if supported or choice == "bf16" else torch.float16)
    if device.type != "cpu":          # mps and others: what every figure was measured with
        return Precision(weights=torch.float32)
    if choice == "bf16":
        return Precision(weights=torch.bfloat16)
    supported = cpu_has_bf16_matmul() if bf16_supported is None else bf16_supported
    return Precision(weights=torch.bfloat16 if supported else torch.float32)


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype the model computes in (that of its first floating-point parameter)."""
    return next(p.dtype for p in model.parameters() if p.is_floating_point())
