"""The store's translator on disk: one safetensors value in LMDB's ``models`` sub-database.

In LMDB beside the adapters, so backup, restore, verify and copy carry it with no code of their own, and it is
replaced in one LMDB transaction: a distill killed at any moment leaves the previous translator (or none).
The weights carry a CRC32 like every adapter; the metadata beside them records, and every load checks: its
format, the base model fingerprint it reads (a translator is as model-bound as an adapter), its settings and
shapes, and what it learned from (count + sha256 of the ids, teacher, held-out loss).
"""
from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np

from ..errors import CorruptData, FormatError, ModelMismatch, NoTranslator
from ..knowledge.translator import Provenance, Translator
from ..storage.blobs import BlobStore
from ..storage.codec import decode_tensors, encode_tensors, read_metadata

KEY = "translator"
FORMAT = 1
KIND = "paramdb-translator"


def encode(translator: Translator, fingerprint: str, prov: Provenance) -> bytes:
    meta = {"kind": KIND, "format": str(FORMAT), "model_fingerprint": fingerprint,
            "provenance": json.dumps(asdict(prov)), "n_params": str(translator.n_params()), **translator.describe()}
    return encode_tensors(translator.tensors(), dtype=np.float16, metadata=meta)


def save(blobs: BlobStore, translator: Translator, fingerprint: str, prov: Provenance) -> int:
    """Store (replacing any earlier one) in one LMDB transaction; returns its size in bytes."""
    value = encode(translator, fingerprint, prov)
    blobs.put_model(KEY, value)
    return len(value)


def _checked_meta(buf, fingerprint: str, where: str) -> dict[str, str]:
    meta = read_metadata(buf)
    if meta.get("kind") != KIND:
        raise CorruptData(f"{where}: the stored translator is not a ParamDB translator")
    if meta.get("format") != str(FORMAT):
        raise FormatError(f"{where}: translator format {meta.get('format')!r} is not one this ParamDB reads "
                          f"({FORMAT}); run `paramdb distill` again")
    if meta.get("model_fingerprint") != fingerprint:
        raise ModelMismatch(f"{where}: the translator was trained on another base model (fingerprint "
                            f"{meta.get('model_fingerprint')}, store's {fingerprint}); run `paramdb distill` again")
    return meta


def load(blobs: BlobStore, fingerprint: str, where: str) -> tuple[Translator, dict]:
    """The stored translator, CRC- and model-checked, and its description; NoTranslator when there is none."""
    buf = blobs.get_model(KEY)
    if buf is None:
        raise NoTranslator(f"store {where} has no translator; make one with `paramdb distill {where}` "
                           "(or --from FILE.jsonl for a new store)")
    meta = _checked_meta(buf, fingerprint, where)
    tensors = decode_tensors(buf, verify=True)
    try:
        translator = Translator.rebuild(tensors, meta)
    except (KeyError, ValueError, RuntimeError) as exc:
        raise CorruptData(f"{where}: the stored translator does not rebuild ({str(exc).splitlines()[0]})") from None
    return translator, describe(meta, len(buf))


def cached(store) -> Translator:
    """The store's translator, loaded once per handle (a distill through the same handle drops the copy)."""
    if store.translator is None:
        store.translator, _ = load(store.blobs, store.config.model_fingerprint, str(store.path))
    return store.translator


def describe(meta: dict[str, str], size: int) -> dict:
    prov = json.loads(meta.get("provenance", "{}"))
    return {"bytes": size, "params": int(meta.get("n_params", 0)), "settings": json.loads(meta.get("settings", "{}")),
            "learned_from": {"count": prov.get("count"), "sha256": prov.get("sha256")},
            "teacher": prov.get("teacher"), "held_out_loss": prov.get("held_out_loss"),
            "base_loss": prov.get("base_loss")}


def info(blobs: BlobStore) -> dict | None:
    """What `stats` shows: size and provenance, without loading the weights (None when there is none)."""
    buf = blobs.get_model(KEY)
    if buf is None:
        return None
    try:
        return describe(read_metadata(buf), len(buf))
    except CorruptData:
        return {"bytes": len(buf), "corrupt": True}


def problems(blobs: BlobStore, fingerprint: str) -> list[tuple[str, str]]:
    """(kind, detail) for `check`: an unreadable, corrupt or other-model translator. None stored is fine."""
    buf = blobs.get_model(KEY)
    if buf is None:
        return []
    try:
        meta = _checked_meta(buf, fingerprint, "translator")
        Translator.rebuild(decode_tensors(buf, verify=True), meta)
    except ModelMismatch as exc:
        return [("translator-model", str(exc))]
    except (CorruptData, FormatError) as exc:
        return [("translator-corrupt", str(exc))]
    except (KeyError, ValueError, RuntimeError) as exc:
        return [("translator-corrupt", f"does not rebuild: {str(exc).splitlines()[0]}")]
    return []
