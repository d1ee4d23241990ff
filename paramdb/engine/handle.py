"""One open store and its models: the handle every operation works over.

The façade (:class:`paramdb.ParamDB`), the operator tasks (paramdb/ops) and the adapter formats
(paramdb/interop) all take the same two parts, an open :class:`Store` and its :class:`Models`, so an operator
opens a store once (``ParamDB.open(...).handle``) and passes the parts to whichever task needs them, and
nothing below the façade ever receives the façade itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import validate
from ..errors import InvalidInput, StoreExists
from ..knowledge.embed import Embedder
from ..knowledge.models import LoadedModel
from ..layout import Layout
from ..storage.lock import DEFAULT_TIMEOUT
from .models import Models, for_new_store
from .store import Store, create_store, open_store


@dataclass
class Handle:
    """An open store (files, metadata, lock, indexes, caches) and the models its adapters belong to."""

    store: Store
    models: Models

    def close(self) -> None:
        self.store.close()


def open_handle(path: str | Path, create: bool = False, *, model: LoadedModel | str | None = None,
                embedder: Embedder | str | None = None, meta_url: str | None = None, device: str | None = None,
                training: dict | None = None, adapter_dtype: str | None = None, augment: dict | None = None,
                lock_timeout: float = DEFAULT_TIMEOUT, readonly: bool = False,
                precision: str | None = None) -> Handle:
    """Open the store at ``path`` (made first with ``create`` when there is none); arguments as for
    :meth:`paramdb.ParamDB.open`."""
    exists = Layout(Path(path)).exists()
    validate.open_args(path, create and not exists, readonly, training, augment)
    if create and not exists:
        return create_handle(path, model=model, embedder=embedder, meta_url=meta_url, device=device,
                             training=training, adapter_dtype=adapter_dtype, augment=augment,
                             lock_timeout=lock_timeout, precision=precision)
    store = open_store(path, meta_url=meta_url, lock_timeout=lock_timeout, readonly=readonly)
    try:
        if adapter_dtype is not None and adapter_dtype != store.config.adapter_dtype:
            raise InvalidInput(f"store {store.path} keeps {store.config.adapter_dtype} adapters, not "
                               f"{adapter_dtype!r}: the adapter dtype is fixed at creation; convert with "
                               f"`paramdb compact {store.path} --adapter-dtype {adapter_dtype}`")
        models = Models(store.config, model, embedder or None, device, label=str(store.path),
                        precision=precision)
    except BaseException:
        store.close()
        raise
    return Handle(store, models)


def create_handle(path: str | Path, *, model: LoadedModel | str | None = None,
                  embedder: Embedder | str | None = None, meta_url: str | None = None, device: str | None = None,
                  training: dict | None = None, adapter_dtype: str | None = None, augment: dict | None = None,
                  lock_timeout: float = DEFAULT_TIMEOUT, precision: str | None = None) -> Handle:
    """Make a new store at ``path`` (StoreExists if one is there), its config recording the loaded models."""
    layout = Layout(Path(path))
    if layout.exists():
        raise StoreExists(f"a store already exists at {layout.root}")
    models = for_new_store(model, embedder, device, training, label=str(layout.root),
                           adapter_dtype=adapter_dtype, augment=augment, precision=precision)
    return Handle(create_store(path, models.config, meta_url=meta_url, lock_timeout=lock_timeout), models)
