"""The base model and embedder of one store: where they come from, loaded on first need, checked on use.

Adapters only make sense on the model they were trained on, so every use goes through :class:`Models`,
which checks the model's weight fingerprint and the embedder's width against the store's config.
:class:`ModelSource` is the picklable description (paths, never loaded objects) a Ray worker loads from.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import NEW_STORE_AUGMENT, StoreConfig, apply_overrides, default_training
from ..storage.codec import check_adapter_dtype
from ..errors import ModelMismatch
from ..knowledge.embed import Embedder
from ..knowledge.settings import check_precision, chosen
from ..knowledge.models import LoadedModel, load_model


@dataclass(frozen=True)
class ModelSource:
    """Where to load a store's model and embedder from (None: the packaged default), on which device."""

    config: StoreConfig
    model: str | None
    embedder: str | None
    device: str | None
    precision: str = "auto"         # as chosen where the insert began; "auto" resolves on each worker's hardware


class Models:
    """The model and embedder for one store (``label`` names it in errors), each loaded on first use."""

    def __init__(self, config: StoreConfig, model: LoadedModel | str | None = None,
                 embedder: Embedder | str | None = None, device: str | None = None, label: str = "(store)",
                 precision: str | None = None):
        self.config, self.label, self.device = config, label, device
        self.precision = chosen(precision, config.precision)   # refused here, before any model is loaded
        self._lm = model if isinstance(model, LoadedModel) else None
        self._model_path = model if isinstance(model, str) else _stored(config.model)
        self._embedder = embedder if isinstance(embedder, Embedder) else None
        self._embedder_path = embedder if isinstance(embedder, str) else _stored(config.embedder)

    @classmethod
    def from_source(cls, source: ModelSource, label: str) -> "Models":
        return cls(source.config, source.model, source.embedder, source.device, label, source.precision)

    def source(self) -> ModelSource:
        """Paths, as reopening the store would use them: what a worker elsewhere loads from."""
        return ModelSource(self.config, self._model_path, self._embedder_path, self.device, self.precision)

    @property
    def lm(self) -> LoadedModel:
        if self._lm is None:
            self._lm = load_model(self._model_path, self.device, self.precision)
        if self._lm.fingerprint != self.config.model_fingerprint:
            raise ModelMismatch(
                f"store {self.label} was trained on base model {self.config.model!r} (fingerprint "
                f"{self.config.model_fingerprint}); the loaded model {self._lm.name!r} has fingerprint "
                f"{self._lm.fingerprint}: its adapters cannot be applied")
        return self._lm

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = Embedder(self._embedder_path)
        if self._embedder.dim != self.config.embedding_dim:
            raise ModelMismatch(f"embedder {self._embedder.name!r} gives {self._embedder.dim}-d vectors; "
                                f"store {self.label} holds {self.config.embedding_dim}-d vectors")
        return self._embedder


def for_new_store(model: LoadedModel | str | Path | None, embedder: Embedder | str | Path | None,
                  device: str | None, training: dict | None, label: str,
                  adapter_dtype: str | None = None, augment: dict | None = None,
                  precision: str | None = None) -> Models:
    """Load the model and embedder a new store is made with, and the config that records them. A
    ``precision`` given here becomes the store's setting (knowledge/precision.py)."""
    adapter_dtype = check_adapter_dtype(adapter_dtype or "float16")   # refused before any model is loaded
    stored = check_precision(precision, "precision") if precision is not None else "auto"
    model, embedder = _absolute(model), _absolute(embedder)
    runtime = chosen(precision, stored)     # the caller's choice beats PARAMDB_PRECISION, as on open
    lm = model if isinstance(model, LoadedModel) else load_model(model, device, runtime)
    emb = embedder if isinstance(embedder, Embedder) else Embedder(embedder)
    n_params = sum(p.numel() for p in lm.model.parameters())
    config = StoreConfig(
        model=str(model) if isinstance(model, str) else ("default" if model is None else lm.name),
        model_fingerprint=lm.fingerprint, embedder=str(embedder) if isinstance(embedder, str) else
        ("default" if emb.is_default else emb.path), embedding_dim=emb.dim,
        training=apply_overrides(default_training(n_params), training, "training"), adapter_dtype=adapter_dtype,
        augment=apply_overrides(NEW_STORE_AUGMENT, augment, "augment"), precision=stored)
    return Models(config, lm, emb, device, label, precision=runtime)


def _absolute(path):
    """Paths are stored in the store's config: make them absolute so any working directory can open it."""
    return str(Path(path).expanduser().resolve()) if isinstance(path, (str, Path)) else path


def _stored(name: str) -> str | None:
    return None if name == "default" else name
