"""The PEFT LoRA adapter folder, read and written without importing PEFT.

A folder is ``adapter_config.json`` plus ``adapter_model.safetensors`` holding, per target Linear,
``base_model.model.<module>.lora_A.weight`` [r, in] and ``...lora_B.weight`` [out, r]; PEFT adds
``scaling = lora_alpha / r`` (``/ sqrt(r)`` with rslora) times B(Ax) to the Linear's output. This is the
layout vLLM, LoRAX, SGLang and ``PeftModel.from_pretrained`` load. ParamDB writes it with its own code so
that exporting needs no PEFT install; tests load the result with the real PEFT.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InvalidInput

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PREFIX = "base_model.model."
_SUFFIXES = {".lora_A.weight": 0, ".lora_B.weight": 1}
# Config keys that, when set, change what the weights mean (per-module ranks, DoRA, transposed factors,
# trained biases or whole modules): ParamDB's side path is plain LoRA, so an adapter using one is refused.
_UNSUPPORTED = ("use_dora", "fan_in_fan_out", "bias", "modules_to_save", "rank_pattern", "alpha_pattern",
                "layer_replication")

Factors = dict[str, tuple[np.ndarray, np.ndarray]]    # module name -> (A [r, in], B [out, r])


@dataclass(frozen=True)
class PeftAdapter:
    """One LoRA adapter as PEFT describes it: its factors and the scaling PEFT applies to them."""

    factors: Factors
    rank: int
    alpha: float
    use_rslora: bool = False
    base_model: str | None = None

    @property
    def scaling(self) -> float:
        return self.alpha / (math.sqrt(self.rank) if self.use_rslora else self.rank)

    @property
    def targets(self) -> list[str]:
        return sorted({m.rsplit(".", 1)[-1] for m in self.factors})


def config_json(adapter: PeftAdapter) -> dict:
    """The adapter_config.json PEFT writes for a plain inference LoRA on a causal LM."""
    return {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": adapter.base_model,
            "r": adapter.rank, "lora_alpha": adapter.alpha, "target_modules": adapter.targets,
            "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False, "use_rslora": adapter.use_rslora,
            "use_dora": False, "modules_to_save": None, "init_lora_weights": True, "rank_pattern": {},
            "alpha_pattern": {}, "inference_mode": True, "revision": None}


def weights_bytes(adapter: PeftAdapter) -> bytes:
    """The safetensors image of the factors, float32 (ParamDB's fp16 values and merged sums are exact in it)."""
    from safetensors.numpy import save

    tensors = {}
    for module, (a, b) in adapter.factors.items():
        tensors[f"{PREFIX}{module}.lora_A.weight"] = np.ascontiguousarray(a, dtype=np.float32)
        tensors[f"{PREFIX}{module}.lora_B.weight"] = np.ascontiguousarray(b, dtype=np.float32)
    return save(tensors, metadata={"format": "pt"})


def folder_files(adapter: PeftAdapter) -> dict[str, bytes]:
    return {CONFIG_FILE: (json.dumps(config_json(adapter), indent=2) + "\n").encode(),
            WEIGHTS_FILE: weights_bytes(adapter)}


def read(folder: str | Path) -> PeftAdapter:
    """A PEFT LoRA folder as a PeftAdapter; anything else is InvalidInput naming the folder and the problem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidInput(f"{folder}: not a folder (expected a PEFT adapter folder)")
    cfg_path, weights = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not cfg_path.is_file():
        raise InvalidInput(f"{folder}: not a PEFT adapter folder (no {CONFIG_FILE})")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"{cfg_path}: not a readable JSON file ({exc})".splitlines()[0]) from None
    if not isinstance(cfg, dict):
        raise InvalidInput(f"{cfg_path}: expected a JSON object")
    if cfg.get("peft_type") != "LORA":
        raise InvalidInput(f"{cfg_path}: peft_type is {cfg.get('peft_type')!r}; only LORA adapters can be imported")
    for key in _UNSUPPORTED:
        if cfg.get(key) not in (None, False, "none") and cfg.get(key) not in ({}, []):
            raise InvalidInput(f"{cfg_path}: {key}={cfg[key]!r} is not supported (plain LoRA only)")
    rank, alpha = cfg.get("r"), cfg.get("lora_alpha")
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise InvalidInput(f"{cfg_path}: r must be a positive integer, got {rank!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
        raise InvalidInput(f"{cfg_path}: lora_alpha must be a number, got {alpha!r}")
    if not weights.is_file():
        extra = " (adapter_model.bin is a pickle, which ParamDB never loads)" \
            if (folder / "adapter_model.bin").exists() else ""
        raise InvalidInput(f"{folder}: no {WEIGHTS_FILE}{extra}")
    factors = _read_factors(weights, rank)
    base = cfg.get("base_model_name_or_path")
    return PeftAdapter(factors, rank, float(alpha), bool(cfg.get("use_rslora", False)),
                       base if isinstance(base, str) and base else None)


def _read_factors(weights: Path, rank: int) -> Factors:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError, TypeError) as exc:
        raise InvalidInput(f"{weights}: not a readable safetensors file ({exc})".splitlines()[0]) from None
    pairs: dict[str, list] = {}
    for key, value in tensors.items():
        suffix = next((s for s in _SUFFIXES if key.endswith(s)), None)
        if not key.startswith(PREFIX) or suffix is None:
            raise InvalidInput(f"{weights}: tensor {key!r} is not a LoRA A/B weight "
                               f"({PREFIX}<module>.lora_A.weight / .lora_B.weight)")
        module = key[len(PREFIX):-len(suffix)]
        pairs.setdefault(module, [None, None])[_SUFFIXES[suffix]] = value
    if not pairs:
        raise InvalidInput(f"{weights}: holds no LoRA weights")
    factors: Factors = {}
    for module, (a, b) in sorted(pairs.items()):
        if a is None or b is None:
            raise InvalidInput(f"{weights}: module {module!r} has only its lora_{'B' if a is None else 'A'}")
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != rank or b.shape[1] != rank:
            raise InvalidInput(f"{weights}: module {module!r} has A {list(a.shape)} and B {list(b.shape)}, "
                               f"not rank {rank} as the config says")
        a, b = a.astype(np.float32), b.astype(np.float32)
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            raise InvalidInput(f"{weights}: module {module!r} holds non-finite values")
        factors[module] = (a, b)
    return factors
