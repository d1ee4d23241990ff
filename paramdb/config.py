"""What a store remembers about how its rows were made, and the calibrated defaults per base model.

Adapters are only meaningful with the exact base model, LoRA shape and prompts they were trained with, so
all of it is persisted in the store (``store_info['config']``) and reused on every later open.
"""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field

from .errors import InvalidInput
from .knowledge.settings import AugmentSettings, TrainSettings, check_number, check_precision
from .storage.codec import check_adapter_dtype

# 1: ParamDB 0.1.0 (no Alembic). 2: Alembic-owned schema, documents.text_sha256, store_info 'blob_format'.
# 3: documents.adapter_kind (trained | translated) and the optional translator in LMDB (sub-database "models");
#    adapters may be int8 (blob format 2, self-describing per blob; config 'adapter_dtype').
# An older store is upgraded by `paramdb migrate` (paramdb/ops/migrate.py); opening one without it is refused.
FORMAT_VERSION = 3
MODES = ("prag", "icl", "combine", "closed")
# How insert makes a row's adapter (db.insert's ``parameterize``): trained per document, translated by the
# store's translator in one forward pass, or "later": no adapter yet, only the embedding (a "pending" row,
# answered from its passage until ``refine`` trains it). And where it is made: this process, or Ray workers.
PARAMETERIZE = ("train", "translate", "later")
EXECUTORS = ("local", "ray")
# How the k retrieved adapters combine: weight 1/k each, 1 each (PRAG), or by retrieval rank (1/rank,
# normalised to sum 1: the best document outweighs the others; RANK_WEIGHTS).
MERGES = ("mean", "sum", "rank")
# The default merge, chosen by measurement on PopQA (docs/recipe.md "Merging the k adapters").
DEFAULT_MERGE = "rank"
# The merged adapters' weight per mode, unless the caller gives one. With the passages in context the adapters
# only need to add to them; at full weight they override the context (measured: docs/evaluation.md, PopQA).
ADAPTER_WEIGHTS = {"prag": 1.0, "combine": 0.5}

# Calibrated on a fictional-facts set (tools/calibrate_training.py; the figures are in docs/recipe.md). PRAG's
# published settings (r=2, α=32, lr 3e-4, 1 epoch) inject nothing into a 135M model; these inject most facts.
# A document stops training once its samples are learned (mean loss below stop_loss), which costs less time
# than running every epoch at about the same accuracy.
SMALL_MODEL_TRAINING = TrainSettings(rank=4, alpha=32.0, lr=5e-3, epochs=10, samples_per_step=4, stop_loss=0.1)
# Not calibrated here (no such model on this machine): PRAG's rank and α with a stronger schedule.
LARGE_MODEL_TRAINING = TrainSettings(rank=2, alpha=32.0, lr=1e-3, epochs=3, samples_per_step=4)
SMALL_MODEL_PARAMS = 1_000_000_000
# What a new store's augmentation is unless created with ``augment={...}``; a stored config without a field reads
# the AugmentSettings default, which is what stores made before that field had. Short answers stay opt-in
# (``augment={"short_answers": True}``, ``paramdb init --short-answers``) until they measure better than
# sentence answers on EM and F1 together (docs/recipe.md).
NEW_STORE_AUGMENT = AugmentSettings()


def rank_weights(k: int) -> list[float]:
    """Weights of k adapters by retrieval rank for ``merge="rank"``: 1/rank, summing to 1 (k=3: .55 .27 .18)."""
    raw = [1.0 / (j + 1) for j in range(k)]
    return [x / sum(raw) for x in raw]


def adapter_weight_for(mode: str, weight: float | None) -> float:
    """The merged adapters' weight in ``mode``: ``weight`` when given (a finite number ≥ 0), else the default."""
    if weight is None:
        return ADAPTER_WEIGHTS.get(mode, 1.0)
    check_number("adapter_weight", weight, 0)
    return float(weight)


def default_training(n_params: int) -> TrainSettings:
    return SMALL_MODEL_TRAINING if n_params < SMALL_MODEL_PARAMS else LARGE_MODEL_TRAINING


@dataclass
class StoreConfig:
    model: str                      # as given at creation ("default" for the packaged SmolLM2)
    model_fingerprint: str
    embedder: str
    embedding_dim: int
    training: TrainSettings
    augment: AugmentSettings = field(default_factory=lambda: NEW_STORE_AUGMENT)
    format_version: int = FORMAT_VERSION
    # How adapters written from now on are kept (codec.ADAPTER_DTYPES); every blob says its own, so rows
    # written before a change (or by `paramdb compact`) stay readable. Absent in format-2 configs: float16.
    adapter_dtype: str = "float16"
    # The base model's dtype when no caller or PARAMDB_PRECISION says otherwise (knowledge/precision.py): a
    # runtime choice, not part of what the adapters are (configs written before it: auto).
    precision: str = "auto"

    def __post_init__(self) -> None:
        check_adapter_dtype(self.adapter_dtype)
        check_precision(self.precision, "store precision")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "StoreConfig":
        data = dict(data)
        data["training"] = TrainSettings(**data["training"])
        data["augment"] = AugmentSettings(**data.get("augment", {}))
        return cls(**data)


def apply_overrides(settings, overrides: dict | None, what: str):
    """Replace fields of a frozen settings dataclass, naming any field that does not exist."""
    if not overrides:
        return settings
    valid = {f.name for f in dataclasses.fields(settings)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise InvalidInput(f"unknown {what} setting {unknown[0]!r}; valid: {', '.join(sorted(valid))}")
    return dataclasses.replace(settings, **overrides)
