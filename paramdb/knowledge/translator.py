"""The translator: a small network that writes a document's LoRA adapter in one forward pass.

Training an adapter per document costs seconds to tens of seconds on a CPU; reading the document once with the
base model and mapping what it sees to adapter factors costs one forward pass. Shape, chosen to stay a few
adapters in size rather than DyPRAG's per-module MLPs (hidden 32 per module: ~16x one adapter here):

- input: the base model's hidden states after the layers in ``settings.layers``, pooled over the document's
  tokens (mean, or the last token as DyPRAG does), concatenated;
- a shared trunk (LayerNorm, Linear, GELU, Linear) maps them to a ``code`` of a few numbers per document;
- per target module, B = reshape(W_m·code + b_m) [out, r] and A is one learned matrix [r, in] shared by every
  document: a document only picks where its update writes (B), the read directions (A) are learned once. With
  b_m = 0 and W_m small at the start, a new translator writes near-zero updates, as LoRA's B = 0 init does.

The adapters it writes have the store's rank and targets and are applied with the store's scale, so answering
cannot tell them from trained ones.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .lora import TargetShape, side_path
from .models import LoadedModel

POOLS = ("mean", "last")


@dataclass(frozen=True)
class TranslatorSettings:
    """What a translator reads and how big it is; recorded with it, so a stored one rebuilds exactly."""

    rank: int = 4
    layers: tuple[int, ...] = (-1,)    # hidden_states indices (-1: the last layer's output)
    pool: str = "mean"
    hidden: int = 256
    code: int = 8                      # 8: ~4.4M params, 8.9 MB fp16 for SmolLM2-135M (~5.8 adapters)
    max_tokens: int = 384              # document tokens read (longer ones are cut)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.pool not in POOLS:
            raise ValueError(f"unknown pool {self.pool!r}; valid: {', '.join(POOLS)}")
        object.__setattr__(self, "layers", tuple(int(x) for x in self.layers))

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "TranslatorSettings":
        return cls(**{**data, "layers": tuple(data.get("layers", (-1,)))})


@dataclass
class Provenance:
    """Which rows (or passages) a translator learned from, and how: stored with it for `stats` and audits."""

    count: int = 0
    sha256: str = ""                   # of the sorted ids (or passage hashes) it learned from
    teacher: str = ""
    held_out_loss: float | None = None
    base_loss: float | None = None     # the held-out samples' loss with no adapter, for comparison
    extra: dict = field(default_factory=dict)


class Translator(torch.nn.Module):
    """Features in, per-module adapter factors out. ``shapes`` are the side path's targets in model order."""

    def __init__(self, shapes: list[TargetShape], feature_dim: int, settings: TranslatorSettings):
        super().__init__()
        self.shapes, self.feature_dim, self.settings = list(shapes), feature_dim, settings
        gen = torch.Generator().manual_seed(settings.seed)
        r, c = settings.rank, settings.code
        self.norm = torch.nn.LayerNorm(feature_dim)
        self.trunk = torch.nn.Sequential(torch.nn.Linear(feature_dim, settings.hidden), torch.nn.GELU(),
                                         torch.nn.Linear(settings.hidden, c))
        for lin in (self.trunk[0], self.trunk[2]):
            bound = 1 / math.sqrt(lin.in_features)
            torch.nn.init.uniform_(lin.weight, -bound, bound, generator=gen)
            torch.nn.init.zeros_(lin.bias)
        self.a = torch.nn.ParameterList(
            [torch.nn.Parameter((torch.rand(r, s.in_features, generator=gen) * 2 - 1) / math.sqrt(s.in_features))
             for s in shapes])
        self.head_w = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.randn(s.out_features * r, c, generator=gen) * 1e-3) for s in shapes])
        self.head_b = torch.nn.ParameterList([torch.nn.Parameter(torch.zeros(s.out_features * r)) for s in shapes])

    def codes(self, features: torch.Tensor) -> torch.Tensor:
        return self.trunk(self.norm(features))

    def factors(self, features: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per module (A [1, r, in], B [n, out, r]) for n documents' features: the side path's batched form
        (A broadcasts over the batch)."""
        code = self.codes(features)
        r = self.settings.rank
        return [(a.unsqueeze(0), torch.nn.functional.linear(code, w, b).view(-1, s.out_features, r))
                for s, a, w, b in zip(self.shapes, self.a, self.head_w, self.head_b)]

    def adapters(self, features: torch.Tensor, names: list[str]) -> list[dict[str, np.ndarray]]:
        """One adapter per document in the stored layout ({"<module>.lora_A": [r, in], ".lora_B": [out, r]})."""
        with torch.no_grad():
            fac = self.factors(features.float())
        out = []
        for d in range(features.shape[0]):
            adapter = {}
            for name, (a, b) in zip(names, fac):
                adapter[f"{name}.lora_A"] = a[0].detach().cpu().numpy()
                adapter[f"{name}.lora_B"] = b[d].detach().cpu().numpy()
            out.append(adapter)
        return out

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- stored form: tensors plus JSON strings (the caller adds fingerprint, version and provenance) --------
    def tensors(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().float().numpy() for k, v in self.state_dict().items()}

    def describe(self) -> dict[str, str]:
        return {"settings": json.dumps(self.settings.to_json()), "feature_dim": str(self.feature_dim),
                "shapes": json.dumps([[s.name, s.in_features, s.out_features] for s in self.shapes])}

    @classmethod
    def rebuild(cls, tensors: dict[str, np.ndarray], described: dict[str, str]) -> "Translator":
        """The translator :meth:`tensors` and :meth:`describe` were taken from (raises ValueError/KeyError on a
        mismatch, which the caller reports as corrupt)."""
        shapes = [TargetShape(n, i, o) for n, i, o in json.loads(described["shapes"])]
        t = cls(shapes, int(described["feature_dim"]), TranslatorSettings.from_json(json.loads(described["settings"])))
        t.load_state_dict({k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in tensors.items()})
        return t


def feature_dim(lm: LoadedModel, settings: TranslatorSettings) -> int:
    return lm.model.config.hidden_size * len(settings.layers)


@torch.no_grad()
def features(lm: LoadedModel, texts: list[str], settings: TranslatorSettings, batch_size: int = 8) -> torch.Tensor:
    """[n, feature_dim] float32: what the translator reads of each text, from the base model alone (any
    adapter installed on the side path is cleared first: features must not depend on what was applied)."""
    side_path(lm.model).clear()
    tok, out = lm.tokenizer, []
    pad = tok.pad_token_id or 0
    for i in range(0, len(texts), batch_size):
        ids = [tok(" ".join(t.split()), add_special_tokens=False).input_ids[:settings.max_tokens] or [pad]
               for t in texts[i:i + batch_size]]
        width = max(len(x) for x in ids)
        batch = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for r, x in enumerate(ids):
            batch[r, :len(x)], mask[r, :len(x)] = torch.tensor(x), 1
        hs = lm.model.get_decoder()(input_ids=batch.to(lm.device), attention_mask=mask.to(lm.device),
                                    output_hidden_states=True).hidden_states
        m = mask.to(lm.device).unsqueeze(-1).float()
        lengths = mask.sum(1).to(lm.device)
        parts = []
        for layer in settings.layers:
            h = hs[layer].float()
            if settings.pool == "mean":
                parts.append((h * m).sum(1) / m.sum(1))
            else:
                parts.append(h[torch.arange(h.shape[0], device=h.device), lengths - 1])
        out.append(torch.cat(parts, -1).cpu())
    return torch.cat(out) if out else torch.zeros(0, feature_dim(lm, settings))


def new_translator(lm: LoadedModel, settings: TranslatorSettings) -> Translator:
    return Translator(side_path(lm.model).shapes, feature_dim(lm, settings), settings)


def translate(lm: LoadedModel, translator: Translator, texts: list[str]) -> list[dict[str, np.ndarray]]:
    """Adapters for ``texts``: one forward pass of the base model plus the translator, no training."""
    names = [n for n, _ in side_path(lm.model).modules]
    feats = features(lm, texts, translator.settings).to(lm.device)
    translator.to(lm.device).eval()
    return translator.adapters(feats, names)
