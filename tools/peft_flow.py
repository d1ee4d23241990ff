"""PRAG's published answer-time flow, re-implemented faithfully with PEFT (the baseline ParamDB replaces).

PRAG (github.com/oneal2000/PRAG, src/inference.py), per question:

    model = PeftModel.from_pretrained(model, passage_0_dir, adapter_name="0", is_trainable=False)
    model.load_adapter(passage_i_dir, adapter_name=str(i))            # i = 1 .. k-1
    model.add_weighted_adapter(adapters=["0", ..], weights=[1] * k, adapter_name="merge",
                               combination_type="cat")
    model.set_adapter("merge")
    ... generate ...
    model.delete_adapter("merge"); model = model.unload(); torch.cuda.empty_cache(); gc.collect()

Each adapter directory is what PRAG's encode.py writes (``PeftModel.save_pretrained`` of a LoraConfig with
task_type CAUSAL_LM, target_modules down/gate/up_proj, lora_dropout 0): ``adapter_config.json`` plus
``adapter_model.safetensors`` holding ``base_model.model.<module>.lora_A.weight`` [r, in] and
``...lora_B.weight`` [out, r] (key names checked against a fresh ``save_pretrained`` with PEFT 0.21.2).

What ``combination_type="cat"`` computes (peft/tuners/lora/model.py, ``add_weighted_adapter``): the merged
adapter gets ``r = lora_alpha = Σ rᵢ`` (so its own scaling is 1, without rslora), and per target module
``A = cat_i(wᵢ · scalingᵢ · Aᵢ, dim=0)``, ``B = cat_i(Bᵢ, dim=1)`` with ``scalingᵢ = αᵢ / rᵢ``. So
``ΔW = B·A = Σ wᵢ sᵢ BᵢAᵢ``: the weight multiplies linearly (no square root; that is only the "linear"
family, which PEFT also falls back to when k = 1 and which applies ``sqrt(wᵢ sᵢ)`` to A and B alike, again
giving ``wᵢ sᵢ BᵢAᵢ``). With PRAG's weights of 1 and one shared (r, α), ΔW = s·Σ BᵢAᵢ, exactly ParamDB's
rank-k·r concatenation ``s·[B₁…B_k][A₁;…;A_k]``. No adjustment is needed to match it.
"""
from __future__ import annotations

import copy
import gc
import json
import time
from pathlib import Path

import numpy as np
import torch
from peft import PeftModel

DEFAULT_TARGETS = ("gate_proj", "up_proj", "down_proj")
MERGED = "merge"          # PRAG's name for the merged adapter


# ---------------------------------------------------------------- adapters as PEFT directories
def adapter_from_factors(module_names: list[str], factors) -> dict[str, np.ndarray]:
    """ParamDB side-path factors (per module (A [r, in], B [out, r]), as from ``engine.adapters.factors_for_ids``) →
    the stored adapter dict ``{"<module>.lora_A": A, "<module>.lora_B": B}``."""
    if len(module_names) != len(factors):
        raise ValueError(f"{len(module_names)} module names for {len(factors)} factor pairs")
    out = {}
    for name, (a, b) in zip(module_names, factors):
        out[f"{name}.lora_A"] = a.detach().float().cpu().numpy()
        out[f"{name}.lora_B"] = b.detach().float().cpu().numpy()
    return out


def export_peft_adapter(adapter: dict[str, np.ndarray], path, rank: int, alpha: float,
                        targets=DEFAULT_TARGETS) -> Path:
    """Write ``adapter`` (ParamDB's tensor dict) as a PEFT LoRA adapter directory loadable by
    ``PeftModel.from_pretrained`` / ``load_adapter``, with the package's own writer
    (paramdb/interop/peft_format.py, what ``paramdb export`` writes); returns the directory."""
    from paramdb.interop.peft_format import PeftAdapter, folder_files

    modules = sorted({k.rsplit(".", 1)[0] for k in adapter})
    for key in adapter:
        if not key.endswith((".lora_A", ".lora_B")):
            raise ValueError(f"unexpected adapter tensor {key!r} (want <module>.lora_A / <module>.lora_B)")
    factors = {}
    for m in modules:
        if m.rsplit(".", 1)[-1] not in targets:
            raise ValueError(f"module {m!r} is not one of the targets {targets}")
        try:
            a, b = np.asarray(adapter[f"{m}.lora_A"]), np.asarray(adapter[f"{m}.lora_B"])
        except KeyError as exc:
            raise ValueError(f"adapter lacks {exc.args[0]}") from None
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != rank or b.shape[1] != rank:
            raise ValueError(f"{m}: A {a.shape} / B {b.shape} do not have rank {rank}")
        factors[m] = (a, b)
    if not factors:
        raise ValueError("adapter holds no tensors")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for name, data in folder_files(PeftAdapter(factors, rank, float(alpha))).items():
        (path / name).write_bytes(data)
    return path


def read_peft_config(path) -> dict:
    return json.loads((Path(path) / "adapter_config.json").read_text())


# ---------------------------------------------------------------- a base model PEFT may wrap
def base_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of ``model`` without ParamDB's side-path hooks, for PEFT to wrap in place.

    ``copy.deepcopy`` copies forward hooks by reference: the copy's Linears would still call the original
    SidePath (adding its delta whenever ParamDB has factors set). Those hooks are removed from the copy.
    """
    sp = getattr(model, "_paramdb_side_path", None)
    memo = {} if sp is None else {id(sp): None}
    dup = copy.deepcopy(model, memo)
    if sp is not None:
        del dup._paramdb_side_path
        ids = {h.id for h in sp._handles}
        for m in dup.modules():
            for hid in [i for i in m._forward_hooks if i in ids]:
                del m._forward_hooks[hid]
    for m in dup.modules():
        if any("SidePath" in getattr(f, "__qualname__", "") for f in m._forward_hooks.values()):
            raise RuntimeError("a ParamDB side-path hook survived in the PEFT copy")
    return dup


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def encode(tokenizer, prompts: list[str], device):
    """Tokenize exactly as ParamDB's ``greedy`` does (left padding, no added special tokens)."""
    tokenizer.padding_side = "left"
    return tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False,
                     return_token_type_ids=False).to(device)


def fixed_generate(model, tokenizer, enc, new_tokens: int) -> torch.Tensor:
    """Greedy decoding of exactly ``new_tokens`` tokens per row (EOS suppressed by ``min_new_tokens``, no
    newline stop) so that every flow generates the same number of tokens. Returns the new token ids."""
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    return out[:, enc["input_ids"].shape[1]:]


# ---------------------------------------------------------------- the flow
class PeftFlow:
    """PRAG's per-question adapter handling on ``model`` (wrapped in place; pass a :func:`base_copy`)."""

    def __init__(self, model: torch.nn.Module, tokenizer, collect_garbage: bool = True):
        self.base = model
        self.tokenizer = tokenizer
        self.collect_garbage = collect_garbage
        self.peft_model: PeftModel | None = None
        self.device = next(model.parameters()).device

    def setup(self, adapter_dirs) -> PeftModel:
        """Load the k adapters from disk and activate their "cat" merge (weights 1), as PRAG does."""
        if self.peft_model is not None:
            raise RuntimeError("teardown() the previous question's adapters first")
        dirs = [str(d) for d in adapter_dirs]
        if not dirs:
            raise ValueError("no adapters")
        model = PeftModel.from_pretrained(self.base, dirs[0], adapter_name="0", is_trainable=False)
        for i, d in enumerate(dirs[1:], 1):
            model.load_adapter(d, adapter_name=str(i))
        model.add_weighted_adapter(adapters=[str(i) for i in range(len(dirs))], weights=[1] * len(dirs),
                                   adapter_name=MERGED, combination_type="cat")
        model.set_adapter(MERGED)
        model.eval()
        self.peft_model = model
        return model

    def teardown(self) -> float:
        """PRAG's clean-up: delete the merged adapter and unload every LoRA layer (restoring the original
        Linears); then ``empty_cache`` + ``gc.collect()``. Returns the ms spent in that last step."""
        if self.peft_model is None:
            return 0.0
        self.peft_model.delete_adapter(MERGED)
        base = self.peft_model.unload()
        self.peft_model = None
        if base is not self.base:
            raise RuntimeError("PEFT unload returned a different model object")
        t = time.perf_counter()
        if self.collect_garbage:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            gc.collect()
        return (time.perf_counter() - t) * 1e3

    def answer(self, question_prompt: str, adapter_dirs, max_new_tokens: int, fixed: bool = True) -> dict:
        """One question through the whole flow, timed per stage. With ``fixed`` exactly ``max_new_tokens``
        are generated (EOS suppressed); otherwise plain greedy up to ``max_new_tokens``."""
        _sync(self.device)
        t0 = time.perf_counter()
        model = self.setup(adapter_dirs)
        _sync(self.device)
        t1 = time.perf_counter()
        enc = encode(self.tokenizer, [question_prompt], self.device)
        if fixed:
            ids = fixed_generate(model, self.tokenizer, enc, max_new_tokens)
        else:
            with torch.no_grad():
                ids = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=self.tokenizer.pad_token_id)[:, enc["input_ids"].shape[1]:]
        _sync(self.device)
        t2 = time.perf_counter()
        gc_ms = self.teardown()
        _sync(self.device)
        t3 = time.perf_counter()
        return {"ids": ids[0].tolist(), "text": self.tokenizer.decode(ids[0], skip_special_tokens=True),
                "setup_ms": (t1 - t0) * 1e3, "generate_s": t2 - t1,
                "teardown_ms": (t3 - t2) * 1e3 - gc_ms, "gc_ms": gc_ms}
