"""Documents -> (embeddings, adapters): the expensive step, with no store access, so it can run anywhere
(this process, a Ray worker) and its result becomes rows only through :mod:`paramdb.engine.commit`.

A different way of turning a document into an adapter (another augmentation, a learned translator, a
training recipe) replaces the body of :func:`parameterize`; everything before and after stays the same.
"""
from __future__ import annotations

import numpy as np

from ..knowledge.augment import build_samples
from ..knowledge.train import train_adapters
from ..knowledge.translator import translate
from ..types import Document
from .models import Models


def parameterize(models: Models, batch: list[Document]) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
    """Embeddings [n, dim] and one float32 adapter per document (tensor name -> array), in batch order."""
    vectors = models.embedder.embed([d.text for d in batch])
    samples = build_samples(models.lm, [d.text for d in batch], models.config.augment)
    adapters = train_adapters(models.lm, samples, [d.id for d in batch], models.config.training)
    return vectors, adapters


def translated(models: Models, translator, batch: list[Document]) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
    """Embeddings and translated adapters (the store's translator, one forward pass each, no training)."""
    texts = [d.text for d in batch]
    return models.embedder.embed(texts), translate(models.lm, translator, texts)


def embedded(models: Models, batch: list[Document]) -> np.ndarray:
    """Embeddings only, for rows whose adapter comes later (``insert(parameterize="later")``): the cost of a
    deferred insert is this one embedder pass."""
    return models.embedder.embed([d.text for d in batch])
