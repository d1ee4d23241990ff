"""A PEFT LoRA trained elsewhere, stored as a row: no training, only its text embedded.

The adapter must fit the store: the same base model (by weight fingerprint when its config names a folder
or GGUF file on this machine; otherwise by module shapes alone), exactly the store's target modules, and
each module's in/out features. Its rank may differ: the side path's merge concatenates factors along the
rank, so any rank merges exactly. A lower rank is zero-padded to the store's (zero rows of A and zero columns
of B add nothing), so rows keep one layout and the fast merge; a higher rank is kept as it is and merges
through the general concatenation. PEFT's scaling (alpha/r, or alpha/sqrt(r) with rslora) is folded into B,
since ParamDB applies the store's one alpha/r to every row.

The row is committed like an insert (``commit_batch``: blobs, then the SQL row, then the indexes; the writer
lock only for that), so a failed or killed import leaves the store as it was.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import validate
from ..config import StoreConfig
from ..engine.commit import commit_batch
from ..engine.models import Models
from ..engine.store import Store
from ..errors import DuplicateId, InvalidInput, ModelMismatch
from ..knowledge.lora import side_path
from ..knowledge.models import load_model
from . import peft_format
from .peft_export import base_model_for
from .peft_format import PeftAdapter

# The kind of adapter an imported row holds (documents.adapter_kind), so `check --repair` never retrains an
# imported row from its text.
ADAPTER_KIND = "imported"
FP16_MAX = 65504.0


@dataclass(frozen=True)
class PeftImport:
    """The stored row's id, the adapter's rank as given and as stored, and how its base model was checked
    ("fingerprint": its config named a loadable model with the store's weights; "shapes": it named none
    here, so only module names and shapes were compared)."""

    id: str
    source_rank: int
    rank: int
    base_check: str


def import_peft(store: Store, models: Models, folder: str | Path, doc_id: str, text: str,
                metadata: dict | None = None) -> PeftImport:
    folder = Path(folder)
    store.lock.refuse_if_readonly("import")
    doc = validate.document({"id": doc_id, "text": text, "metadata": metadata}, f"import {folder}")
    if store.meta.get([doc.id]):
        raise DuplicateId(doc.id)
    adapter = peft_format.read(folder)
    shapes = {s.name: (s.in_features, s.out_features) for s in side_path(models.lm.model).shapes}
    _check_modules(folder, adapter, shapes)
    base_check = _check_base_model(store.config, folder, adapter.base_model)
    training = store.config.training
    tensors = _stored_tensors(folder, adapter, training.rank, training.scale)
    vectors = models.embedder.embed([doc.text])
    commit_batch(store, [doc], vectors, [tensors], kind=ADAPTER_KIND)
    store.indexes.save()
    return PeftImport(doc.id, adapter.rank, max(adapter.rank, training.rank), base_check)


def _check_modules(folder: Path, adapter: PeftAdapter, shapes: dict[str, tuple[int, int]]) -> None:
    missing = [m for m in shapes if m not in adapter.factors]
    extra = [m for m in adapter.factors if m not in shapes]
    if missing or extra:
        targets = sorted({m.rsplit(".", 1)[-1] for m in shapes})
        what = f"lacks module {missing[0]!r}" if missing else f"has module {extra[0]!r}, which the store has not"
        raise ModelMismatch(f"{folder}: adapter {what} ({len(adapter.factors)} modules, targets "
                            f"{', '.join(adapter.targets)}); the store's adapters cover {len(shapes)} modules, "
                            f"targets {', '.join(targets)}")
    for module, (d_in, d_out) in shapes.items():
        a, b = adapter.factors[module]
        if a.shape[1] != d_in or b.shape[0] != d_out:
            raise ModelMismatch(f"{folder}: module {module!r} maps {a.shape[1]} -> {b.shape[0]} features; "
                                f"the store's base model has {d_in} -> {d_out} (another model?)")


def _check_base_model(config: StoreConfig, folder: Path, named: str | None) -> str:
    """Compare the named base model's weights with the store's when it is on this machine."""
    path = Path(named).expanduser().resolve() if named else None
    if path is None or not ((path / "config.json").is_file() or (path.suffix == ".gguf" and path.is_file())):
        return "shapes"                         # a hub name, or a folder not on this machine
    own = base_model_for(config)
    if own is not None and path == Path(own).resolve():
        return "fingerprint"                    # the very folder the store's model loads from
    other = load_model(str(path), "cpu")
    if other.fingerprint != config.model_fingerprint:
        raise ModelMismatch(f"{folder}: adapter was trained on {named} (weight fingerprint {other.fingerprint}); "
                            f"the store's base model {config.model!r} has fingerprint "
                            f"{config.model_fingerprint}")
    return "fingerprint"


def _stored_tensors(folder: Path, adapter: PeftAdapter, store_rank: int, store_scale: float
                    ) -> dict[str, np.ndarray]:
    """The adapter as stored tensors under the store's scale, padded up to the store's rank."""
    ratio = adapter.scaling / store_scale
    out = {}
    for module, (a, b) in adapter.factors.items():
        b = b * ratio
        if adapter.rank < store_rank:
            pad = store_rank - adapter.rank
            a = np.concatenate([a, np.zeros((pad, a.shape[1]), np.float32)], 0)
            b = np.concatenate([b, np.zeros((b.shape[0], pad), np.float32)], 1)
        if max(np.abs(a).max(initial=0), np.abs(b).max(initial=0)) > FP16_MAX:
            raise InvalidInput(f"{folder}: module {module!r} has values beyond float16's range at the "
                                f"store's scale (alpha/r {store_scale:g} against the adapter's {adapter.scaling:g})")
        out[f"{module}.lora_A"], out[f"{module}.lora_B"] = a, b
    return out
