"""A store's adapters as PEFT LoRA folders: one row's, several rows' or the merge a question would use.

What is written is what ParamDB applies: the factors come from ``engine.adapters.factors_for_ids`` (the
answer path's own decoding) and a question's merge from ``merge_flat`` with generate's scales, so a PEFT model loading the
folder adds the same update ParamDB does. Merging k adapters of rank r exactly is one adapter of rank
k·r: A is the k A's stacked, B the k B's side by side, each multiplied by its merge scale
(alpha/r x adapter weight x 1/k for mean). That scale is folded into B and ``lora_alpha`` equals the rank,
so PEFT's own scaling is 1; ``paramdb_export.json`` beside the adapter says so and names the documents.

A pending row (``insert --defer``) has no adapter yet: exporting it is refused in one line (nothing written),
and a question's merge skips pending hits, exactly as ``generate`` in prag mode leaves them out of its merge
(it reads their passages instead); the sidecar and ``PeftExport.skipped`` name them. A question whose hits are
all pending has no merge to export: refused.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__, validate
from ..config import StoreConfig, rank_weights
from ..engine import adapters, search
from ..engine.models import Models
from ..engine.store import Store
from ..errors import InvalidInput, ModelLoadError
from ..knowledge.inject import merge_flat, question_scale
from ..knowledge.lora import side_path
from ..knowledge.models import model_folder
from ..options import AnswerOptions, answer_options
from ..storage.meta import PENDING
from . import folders, peft_format
from .peft_format import PeftAdapter

SIDECAR = "paramdb_export.json"


@dataclass(frozen=True)
class PeftExport:
    """What an export wrote: the folder, each exported id's adapter folder (the folder itself for one id
    or a merge), the adapter rank(s) and the base model folder named in the config."""

    path: Path
    folders: dict[str, Path]
    base_model: str | None
    merged: bool = False
    rank: int | None = None
    hits: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)   # pending hits of a question: no adapter yet, not merged


def base_model_for(config: StoreConfig) -> str | None:
    """The folder ``AutoModelForCausalLM.from_pretrained`` loads the store's base model from, or None for a
    model that was handed over in memory and has no folder."""
    model = config.model
    if model != "default" and not Path(model).exists():
        return None
    try:
        return str(model_folder(None if model == "default" else model))
    except ModelLoadError:
        return None


def _as_adapter(names: list[str], factors, scaling: float, base: str | None) -> PeftAdapter:
    """Side-path factors (per module (A [r, in], B [out, r]) on the compute device) as a PeftAdapter whose
    PEFT scaling is ``scaling``."""
    pairs = {n: (a.detach().float().cpu().numpy(), b.detach().float().cpu().numpy())
             for n, (a, b) in zip(names, factors)}
    rank = next(iter(pairs.values()))[0].shape[0]
    return PeftAdapter(pairs, rank, float(scaling * rank), base_model=base)


EXPORT_FIELDS = ("k", "where", "method", "merge", "adapter_weight")   # the options a question's merge reads


def export_peft(store: Store, models: Models, ids: str | list[str] | None, path: str | Path,
                options: AnswerOptions | None = None, /, *, question: str | None = None, force: bool = False,
                **fields) -> PeftExport:
    """Write adapters as PEFT LoRA folders that ``PeftModel.from_pretrained`` (vLLM, LoRAX, ...) loads: one
    id's at ``path``, several ids' at ``path/<id>/``, or with ``question`` the one merged adapter
    ``generate(question, mode="prag")`` would apply with the same ``options`` (k, where, method, merge,
    adapter_weight)."""
    validate.export_args(ids, question)
    opts = answer_options(options, fields, EXPORT_FIELDS)
    if question is not None:
        return export_question(store, models, validate.query_text(question, "question"), Path(path), opts, force)
    return export_rows(store, models, [ids] if isinstance(ids, str) else list(ids), Path(path), force)


def export_rows(store: Store, models: Models, ids: list[str], target: Path, force: bool = False) -> PeftExport:
    """Each row's adapter: ``target`` itself for one id, ``target/<folder_name(id)>/`` for several."""
    if not ids:
        raise InvalidInput("give at least one id to export")
    if len(set(ids)) != len(ids):
        raise InvalidInput(f"id {next(i for i in ids if ids.count(i) > 1)!r} is given twice")
    folders.check_target(Path(target), force)          # before any model is loaded
    factors = adapters.factors_for_ids(store, models.lm, ids)   # UnknownId before anything is written
    names = [n for n, _ in side_path(models.lm.model).modules]
    base, scale = base_model_for(store.config), store.config.training.scale
    peft = {i: _as_adapter(names, f, scale, base) for i, f in zip(ids, factors)}
    if len(ids) == 1:
        files = {**peft_format.folder_files(peft[ids[0]]),
                 SIDECAR: _sidecar({"documents": ids, "kind": "row"})}
        written = folders.write_tree(Path(target), files, force)
        return PeftExport(written, {ids[0]: written}, base, rank=peft[ids[0]].rank)
    files, where = {}, {}
    for doc_id, adapter in peft.items():
        name = folders.folder_name(doc_id)
        where[doc_id] = name
        files.update({f"{name}/{k}": v for k, v in peft_format.folder_files(adapter).items()})
    files[SIDECAR] = _sidecar({"kind": "rows", "folders": where})
    written = folders.write_tree(Path(target), files, force)
    return PeftExport(written, {i: written / n for i, n in where.items()}, base)


def export_question(store: Store, models: Models, question: str, target: Path, opts: AnswerOptions,
                    force: bool = False) -> PeftExport:
    """The one adapter ``generate(question, opts)`` applies in prag mode, with the same retrieval, merge and
    adapter weight (``opts`` was checked by the caller)."""
    k, where, method, merge, weight = opts.k, opts.where, opts.method, opts.merge, opts.weight
    folders.check_target(Path(target), force)
    hits = [hit for hit, _ in search.search(store, models, question, k, where, method)]
    if not hits:
        raise InvalidInput(f"no documents match {question!r}{' with that filter' if where else ''}: nothing to merge")
    skipped = [h.id for h in hits if h.adapter_kind == PENDING]
    ids = [h.id for h in hits if h.adapter_kind != PENDING]
    if not ids:
        raise InvalidInput(f"the {len(hits)} documents matching {question!r} are all pending (no adapter yet): "
                           f"nothing to merge; run `paramdb refine {store.path}` first")
    lm = models.lm
    dtype = next(lm.model.parameters()).dtype
    scale = question_scale(store.config.training.scale, merge, weight, len(ids))
    factors = adapters.factors_for_ids(store, lm, ids)
    weights = [rank_weights(len(ids))] if merge == "rank" else None      # per document, as generate
    merged = merge_flat([factors], lm.device, dtype, scale=[scale], weights=weights)
    names = [n for n, _ in side_path(lm.model).modules]
    base = base_model_for(store.config)
    adapter = _as_adapter(names, [(a[0], b[0]) for a, b in merged], 1.0, base)
    files = {**peft_format.folder_files(adapter), SIDECAR: _sidecar({
        "kind": "merge", "question": question, "documents": ids, "pending_skipped": skipped, "k": k, "method": method, "merge": merge,
        "adapter_weight": weight, "where": where,
        "ranks": [f[0][0].shape[0] for f in factors],
        "exact_merge": "rank = sum of the documents' ranks: A = the documents' A stacked, B = their B side by "
                       f"side, each times its merge scale ({scale:g} = alpha/r x adapter weight"
                       f"{' / k' if merge == 'mean' else ''}{' x 1/rank normalised' if merge == 'rank' else ''}); "
                       "lora_alpha = r, so PEFT's scaling is 1"})}
    written = folders.write_tree(Path(target), files, force)
    return PeftExport(written, {}, base, merged=True, rank=adapter.rank, hits=ids, skipped=skipped)


def _sidecar(info: dict) -> bytes:
    return (json.dumps({"written_by": f"paramdb {__version__}", **info}, indent=2, ensure_ascii=False)
            + "\n").encode()

