"""The translator: a small network that writes a document's LoRA adapter in one forward pass.

Training an adapter per document costs seconds to tens of seconds on a CPU; reading the document once with the
base model and mapping what it sees to adapter factors costs one forward pass. Shape, chosen to stay a few
adapters in size rather than DyPRAG's per-module MLPs (hidden 32 per module: ~16x one adapter here):

- input: the base model's hidden states after the layers in ``settings.layers``, pooled over the document's
  tokens (mean, or the last token as DyPRAG does), concatenated;
- a shared trunk (LayerNorm, Linear, GELU, Linear) maps them to a ``code`` of a few numbers per document;
- per target module, B = reshape(W_m·code + b_m) [out, r] and A is one learned matrix [r, in] shared by every
  document: a document only picks where its update writes (B), the read directions (A) are learned once. With
  b_m = 0 and W_m small at the start, a new translator writes near-zero updates, as LoRA's B = 0 init does;
- the lexical path (``settings.lexical`` > 0): an 8-number code cannot name a document's facts, so the top
  ``lexical`` modules that write to the residual stream (down_proj) also get, per rank slot j, an attention
  pool over the document's tokens (query q_j on their states) of those tokens' output embeddings, times a
  learned gain: B[:, j] += g_mj · Σ_t softmax_t(q_j·h_t) · e_t. Writing e_t into the residual stream raises
  token t's logit, so slot j can carry "the place named in this document" to the moment a question's read
  direction A_j fires. Its parameters are r queries and a few gains: it adds almost nothing to the size.

Features from a middle layer (``settings.layers`` all non-negative) stop the base model's forward pass there:
the translator then reads a document for a fraction of a full forward pass.

The adapters it writes have the store's rank and targets and are applied with the store's scale, so answering
cannot tell them from trained ones.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch

from .lora import TargetShape, side_path
from .models import LoadedModel

POOLS = ("mean", "last")


@dataclass(frozen=True)
class TranslatorSettings:
    """What a translator reads and how big it is; recorded with it, so a stored one rebuilds exactly."""

    rank: int = 4
    layers: tuple[int, ...] = (-1,)    # hidden_states indices (-1: the last layer's output, 8: after 8 layers)
    pool: str = "mean"
    hidden: int = 256
    code: int = 8                      # 8: ~4.4M params, 8.9 MB fp16 for SmolLM2-135M (~5.8 adapters)
    max_tokens: int = 384              # document tokens read (longer ones are cut)
    seed: int = 0
    lexical: int = 0                   # top residual-writing modules given the lexical path (0: none)

    def __post_init__(self) -> None:
        if self.pool not in POOLS:
            raise ValueError(f"unknown pool {self.pool!r}; valid: {', '.join(POOLS)}")
        if self.lexical < 0:
            raise ValueError(f"lexical must be 0 or more modules, got {self.lexical}")
        object.__setattr__(self, "layers", tuple(int(x) for x in self.layers))

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "TranslatorSettings":
        # A translator stored before the lexical path existed has none: rebuild it so.
        return cls(**{"lexical": 0, **data, "layers": tuple(data.get("layers", (-1,)))})


def parse_settings(pairs) -> dict:
    """``KEY=VALUE`` strings (the CLI's and the tools' ``--setting``) as TranslatorSettings overrides: ``pool``
    is a word, ``layers`` integers separated by '/', the rest integers."""
    valid = [f.name for f in fields(TranslatorSettings)]
    out: dict = {}
    for text in pairs:
        key, eq, value = (part.strip() for part in text.partition("="))
        if not eq or not key:
            raise ValueError(f"expected KEY=VALUE, got {text!r}")
        if key not in valid:
            raise ValueError(f"unknown translator setting {key!r}; valid: {', '.join(valid)}")
        try:
            out[key] = (tuple(int(x) for x in value.split("/")) if key == "layers"
                        else value if key == "pool" else int(value))
        except ValueError:
            kind = "integers separated by '/'" if key == "layers" else "an integer"
            raise ValueError(f"{key} takes {kind}, got {value!r}") from None
    return out


@dataclass
class Provenance:
    """Which rows (or passages) a translator learned from, and how: stored with it for `stats` and audits."""

    count: int = 0
    sha256: str = ""                   # of the sorted ids (or passage hashes) it learned from
    teacher: str = ""
    held_out_loss: float | None = None
    base_loss: float | None = None     # the held-out samples' loss with no adapter, for comparison
    extra: dict = field(default_factory=dict)


@dataclass
class DocFeatures:
    """What the translator reads of n documents: pooled states [n, F] for the code, and for the lexical path
    each token's state and output embedding ([n, T, d], float16 to keep hundreds of documents in memory)
    with the mask of real tokens [n, T]."""

    pooled: torch.Tensor
    states: torch.Tensor | None = None
    embeds: torch.Tensor | None = None
    mask: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.pooled.shape[0]

    def __getitem__(self, idx) -> "DocFeatures":
        pick = lambda t: None if t is None else t[idx]  # noqa: E731
        return DocFeatures(self.pooled[idx], pick(self.states), pick(self.embeds), pick(self.mask))

    def to(self, device) -> "DocFeatures":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return DocFeatures(self.pooled.to(device), move(self.states), move(self.embeds), move(self.mask))


def lexical_modules(shapes: list[TargetShape], width: int, count: int) -> list[int]:
    """Indices of the last ``count`` target modules that write to the residual stream (out == width)."""
    writers = [i for i, s in enumerate(shapes) if s.out_features == width]
    return writers[len(writers) - count:] if count > 0 else []


class Translator(torch.nn.Module):
    """Features in, per-module adapter factors out. ``shapes`` are the side path's targets in model order."""

    def __init__(self, shapes: list[TargetShape], feature_dim: int, settings: TranslatorSettings,
                 width: int | None = None):
        super().__init__()
        self.shapes, self.feature_dim, self.settings = list(shapes), feature_dim, settings
        self.width = width or feature_dim // len(settings.layers)       # the model's hidden size
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
        self.lexical = lexical_modules(self.shapes, self.width, settings.lexical)
        if self.lexical:
            self.lex_norm = torch.nn.LayerNorm(self.width)
            self.lex_query = torch.nn.Parameter(torch.randn(r, self.width, generator=gen) / math.sqrt(self.width))
            self.lex_gain = torch.nn.Parameter(torch.zeros(len(self.lexical), r))

    def codes(self, features: torch.Tensor) -> torch.Tensor:
        return self.trunk(self.norm(features))

    def slots(self, feats: DocFeatures) -> torch.Tensor:
        """[n, r, width]: per rank slot, the attention-pooled output embeddings of each document's tokens."""
        if feats.states is None:
            raise ValueError("this translator's lexical path needs token features (features() with lexical > 0)")
        h = self.lex_norm(feats.states.float())
        scores = torch.einsum("ntd,rd->nrt", h, self.lex_query) / math.sqrt(self.width)
        scores = scores.masked_fill(~feats.mask.bool()[:, None, :], float("-inf"))
        return torch.einsum("nrt,ntd->nrd", torch.softmax(scores, -1), feats.embeds.float())

    def factors(self, feats: DocFeatures) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per module (A [1, r, in], B [n, out, r]) for n documents' features: the side path's batched form
        (A broadcasts over the batch)."""
        code = self.codes(feats.pooled.float())
        r = self.settings.rank
        out = [(a.unsqueeze(0), torch.nn.functional.linear(code, w, b).view(-1, s.out_features, r))
               for s, a, w, b in zip(self.shapes, self.a, self.head_w, self.head_b)]
        if self.lexical:
            slots = self.slots(feats).transpose(1, 2)                  # [n, width, r]
            for k, m in enumerate(self.lexical):
                a, b = out[m]
                out[m] = (a, b + slots * self.lex_gain[k])
        return out

    def adapters(self, features: DocFeatures, names: list[str]) -> list[dict[str, np.ndarray]]:
        """One adapter per document in the stored layout ({"<module>.lora_A": [r, in], ".lora_B": [out, r]})."""
        with torch.no_grad():
            fac = self.factors(features)
        out = []
        for d in range(len(features)):
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
                "shapes": json.dumps([[s.name, s.in_features, s.out_features] for s in self.shapes]),
                "width": str(self.width)}

    @classmethod
    def rebuild(cls, tensors: dict[str, np.ndarray], described: dict[str, str]) -> "Translator":
        """The translator :meth:`tensors` and :meth:`describe` were taken from (raises ValueError/KeyError on a
        mismatch, which the caller reports as corrupt)."""
        shapes = [TargetShape(n, i, o) for n, i, o in json.loads(described["shapes"])]
        width = int(described["width"]) if "width" in described else None
        t = cls(shapes, int(described["feature_dim"]), TranslatorSettings.from_json(json.loads(described["settings"])),
                width)
        t.load_state_dict({k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in tensors.items()})
        return t


def feature_dim(lm: LoadedModel, settings: TranslatorSettings) -> int:
    return lm.model.config.hidden_size * len(settings.layers)


class _Stop(Exception):
    """Raised by a hook once the deepest hidden state the translator reads has been seen."""


def _hidden_states(lm: LoadedModel, ids: torch.Tensor, mask: torch.Tensor, layers: tuple[int, ...]):
    """{index: hidden_states[index]} for ``layers``, running the decoder only as deep as the deepest one."""
    decoder = lm.model.get_decoder()
    n = len(decoder.layers)
    want = sorted({layer % (n + 1) for layer in layers})
    if want[-1] == n:
        hs = decoder(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        return {i: hs[i] for i in want}
    seen: dict[int, torch.Tensor] = {}

    def capture(i):
        def hook(_module, args, kwargs):
            seen[i] = args[0] if args else kwargs["hidden_states"]
            if i == want[-1]:
                raise _Stop
        return hook
    handles = [decoder.layers[i].register_forward_pre_hook(capture(i), with_kwargs=True) for i in want]
    try:
        decoder(input_ids=ids, attention_mask=mask)
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    return seen


@torch.no_grad()
def features(lm: LoadedModel, texts: list[str], settings: TranslatorSettings, batch_size: int = 8) -> DocFeatures:
    """What the translator reads of each text, from the base model alone (any adapter installed on the side
    path is cleared first: features must not depend on what was applied)."""
    side_path(lm.model).clear()
    tok = lm.tokenizer
    pad = tok.pad_token_id or 0
    n_layers = len(lm.model.get_decoder().layers)
    out_emb = lm.model.get_output_embeddings().weight
    pooled, states, embeds, masks = [], [], [], []
    encoded = [tok(" ".join(t.split()), add_special_tokens=False).input_ids[:settings.max_tokens] or [pad]
               for t in texts]
    order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))     # batches of like lengths pad little
    for i in range(0, len(texts), batch_size):
        ids = [encoded[j] for j in order[i:i + batch_size]]
        width = max(len(x) for x in ids)
        batch = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for r, x in enumerate(ids):
            batch[r, :len(x)], mask[r, :len(x)] = torch.tensor(x), 1
        hs = _hidden_states(lm, batch.to(lm.device), mask.to(lm.device), settings.layers)
        m = mask.to(lm.device).unsqueeze(-1).float()
        lengths = mask.sum(1).to(lm.device)
        parts = []
        for layer in settings.layers:
            h = hs[layer % (n_layers + 1)].float()
            if settings.pool == "mean":
                parts.append((h * m).sum(1) / m.sum(1))
            else:
                parts.append(h[torch.arange(h.shape[0], device=h.device), lengths - 1])
        pooled.append(torch.cat(parts, -1).cpu())
        if settings.lexical:
            states.append(hs[settings.layers[-1] % (n_layers + 1)].half().cpu())
            embeds.append(out_emb[batch.to(out_emb.device)].half().cpu())
            masks.append(mask.bool())
    if not pooled:
        return DocFeatures(torch.zeros(0, feature_dim(lm, settings)))
    back = torch.argsort(torch.tensor(order))                              # the callers' order again
    if not settings.lexical:
        return DocFeatures(torch.cat(pooled))[back]
    longest = max(t.shape[1] for t in masks)
    grow = lambda t: torch.nn.functional.pad(t, (0, 0, 0, longest - t.shape[1]))  # noqa: E731
    return DocFeatures(torch.cat(pooled), torch.cat([grow(t) for t in states]), torch.cat([grow(t) for t in embeds]),
                       torch.cat([torch.nn.functional.pad(t, (0, longest - t.shape[1])) for t in masks]))[back]


def new_translator(lm: LoadedModel, settings: TranslatorSettings) -> Translator:
    return Translator(side_path(lm.model).shapes, feature_dim(lm, settings), settings,
                      lm.model.config.hidden_size)


def translate(lm: LoadedModel, translator: Translator, texts: list[str]) -> list[dict[str, np.ndarray]]:
    """Adapters for ``texts``: one forward pass of the base model plus the translator, no training."""
    names = [n for n, _ in side_path(lm.model).modules]
    feats = features(lm, texts, translator.settings).to(lm.device)
    translator.to(lm.device).eval()
    return translator.adapters(feats, names)
