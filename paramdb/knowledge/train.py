"""Train one LoRA adapter per document, many documents in one forward/backward.

Each target module holds stacked factors A [N, r, in], B [N, out, r]; every row of a batch carries its
document's index and the side path gathers that document's factors. The loss is the sum over documents of
each document's mean token loss, so each document's gradient is exactly what it would be alone. Adam is
elementwise, and this one keeps a step count per document and skips documents with no rows in a step, so
training N documents together gives the same adapters as training each alone (tests/test_train.py).
Padding goes to the longest row of the batch, never to a fixed length.
"""
from __future__ import annotations

import math
import re
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from . import budget
from .lora import side_path, tensor_names
from .models import LoadedModel
from .precision import precision_for
from .settings import TrainSettings


@dataclass(frozen=True)
class Sample:
    """One training text: ``prompt`` is context the loss ignores, ``target`` is what the adapter learns."""

    prompt: str
    target: str


def doc_seed(seed: int, key: str) -> int:
    """A per-document seed, so a document's adapter does not depend on what it was batched with."""
    return (seed * 1_000_003 + zlib.crc32(key.encode())) % (2**31)


def _encode(tokenizer, samples: list[Sample], max_length: int) -> list[tuple[list[int], list[int]]]:
    """Token ids and labels of each sample, cut to ``max_length``; of a huge text only a prefix that holds
    ``max_length`` tokens is tokenized."""
    out = []
    for s in samples:
        p = budget.token_ids(tokenizer, s.prompt, max_length) if s.prompt else []
        t = budget.token_ids(tokenizer, s.target, max_length)
        ids = (p + t)[:max_length]
        labels = ([-100] * len(p) + t)[:max_length]
        out.append((ids, labels))
    return out


class _StackedAdam:
    """Adam over [N, ...] tensors with a step count per document; inactive documents are left untouched."""

    def __init__(self, params: list[torch.Tensor], n: int, lr: float, betas=(0.9, 0.999), eps=1e-8):
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.steps = torch.zeros(n, dtype=torch.float64)

    @torch.no_grad()
    def step(self, active: torch.Tensor) -> None:
        b1, b2 = self.betas
        self.steps += active.double()
        idx = active.nonzero().flatten()
        t = self.steps[idx]
        c1 = (1 - b1 ** t).to(self.params[0].dtype)
        c2 = (1 - b2 ** t).to(self.params[0].dtype)
        for p, m, v in zip(self.params, self.m, self.v):
            g = p.grad[idx]
            m[idx] = m[idx] * b1 + g * (1 - b1)
            v[idx] = v[idx] * b2 + g * g * (1 - b2)
            shape = (-1,) + (1,) * (p.dim() - 1)
            denom = (v[idx] / c2.view(shape)).sqrt() + self.eps
            p[idx] -= self.lr * (m[idx] / c1.view(shape)) / denom
            p.grad = None


def _init_factors(shapes, keys: list[str], s: TrainSettings, device, dtype=torch.float32,
                  trained: list[bool] | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """PEFT's initialisation per document: A ~ kaiming-uniform(a=√5), B = 0, from that document's seed;
    in ``dtype`` (fp32 whatever the base model's dtype: precision.py), drawn in fp32 so it is the same.
    A module that is not ``trained`` gets zero factors that take no gradient (its update stays exactly 0)."""
    factors = []
    gens = [torch.Generator().manual_seed(doc_seed(s.seed, k)) for k in keys]
    for m, shp in enumerate(shapes):
        bound = 1.0 / math.sqrt(shp.in_features)
        a = torch.stack([(torch.rand(s.rank, shp.in_features, generator=g) * 2 - 1) * bound for g in gens])
        b = torch.zeros(len(keys), shp.out_features, s.rank)
        learn = trained is None or trained[m]
        a = a if learn else torch.zeros_like(a)
        factors.append((a.to(device=device, dtype=dtype).requires_grad_(learn),
                        b.to(device=device, dtype=dtype).requires_grad_(learn)))
    return factors


_LAYER_INDEX = re.compile(r"\.(\d+)\.")


def trained_modules(names: list[str], layers: float) -> list[bool]:
    """Which target modules train: those in the top ``layers`` fraction of the numbered decoder layers (at
    least one layer). Names without a layer number (not a stack of layers) always train."""
    index = [int(m.group(1)) if (m := _LAYER_INDEX.search(n)) else None for n in names]
    numbered = sorted({i for i in index if i is not None})
    if not numbered or layers >= 1:
        return [True] * len(names)
    keep = set(numbered[len(numbered) - max(1, round(layers * len(numbered))):])
    return [i is None or i in keep for i in index]


def _schedule(n_samples: list[int], keys: list[str], s: TrainSettings):
    """Per epoch, the steps as lists of (doc, sample) pairs: each document's own shuffled order, in chunks."""
    gens = [np.random.default_rng(doc_seed(s.seed, k) + 1) for k in keys]
    for _ in range(s.epochs):
        per_doc = [g.permutation(n).tolist() for g, n in zip(gens, n_samples)]
        n_steps = max(math.ceil(n / s.samples_per_step) for n in n_samples)
        yield [[(d, i) for d, order in enumerate(per_doc) for i in order[t * s.samples_per_step:
                                                                          (t + 1) * s.samples_per_step]]
               for t in range(n_steps)]


CHUNK_OVERHEAD_TOKENS = 48   # what one more forward/backward costs, in padded tokens (135M model, 2-core CPU)


def _token_chunks(rows: list, budget: int, overhead: int = CHUNK_OVERHEAD_TOKENS) -> list[list]:
    """Rows sorted by length and cut into chunks of at most ``budget`` padded tokens (rows x longest), so
    activation memory is bounded whatever the batch. Where to cut is chosen to minimise padded tokens plus
    ``overhead`` per chunk: one chunk pads every row to the longest, many small chunks waste GEMM efficiency
    and per-call costs. Exact dynamic programme over the sorted lengths (contiguous chunks are optimal)."""
    rows = sorted(rows, key=lambda r: len(r[1][0]))
    lengths = [len(r[1][0]) for r in rows]
    n = len(rows)
    cost, cut = [0.0] * (n + 1), [n] * (n + 1)          # cost[i]: best for rows[i:], first chunk rows[i:cut[i]]
    for i in range(n - 1, -1, -1):
        cost[i] = math.inf
        for j in range(i + 1, n + 1):
            padded = (j - i) * lengths[j - 1]
            if padded > budget and j > i + 1:
                break
            c = cost[j] + padded + overhead
            if c < cost[i]:
                cost[i], cut[i] = c, j
    chunks, i = [], 0
    while i < n:
        chunks.append(rows[i:cut[i]])
        i = cut[i]
    return chunks


def _padded(chunk, pad: int, device):
    """Token ids, labels and attention mask of a chunk's rows, right-padded to its longest row."""
    width = max(len(ids) for _, (ids, _), _ in chunk)
    ids = torch.full((len(chunk), width), pad, dtype=torch.long)
    labels = torch.full((len(chunk), width), -100, dtype=torch.long)
    mask = torch.zeros((len(chunk), width), dtype=torch.long)
    for r, (_, (i, l), _) in enumerate(chunk):
        ids[r, :len(i)], labels[r, :len(l)], mask[r, :len(i)] = torch.tensor(i), torch.tensor(l), 1
    return ids.to(device), labels.to(device), mask.to(device)


@contextmanager
def _only_layers(backbone, start: int, stop: int | None):
    """Run the backbone through its decoder layers[start:stop] only (embeddings and final norm as always)."""
    every = backbone.layers
    backbone.layers = torch.nn.ModuleList(list(every)[start:stop])
    try:
        yield
    finally:
        backbone.layers = every


def lowest_trained_layer(names: list[str], trained: list[bool]) -> int:
    """The index of the lowest decoder layer with a trained module: every layer below it is frozen and
    unadapted, so its outputs are the base model's and the same in every epoch. 0 when nothing is frozen."""
    index = [int(m.group(1)) if (m := _LAYER_INDEX.search(n)) else None for n in names]
    if any(i is None for i, t in zip(index, trained) if t):
        return 0
    return min(i for i, t in zip(index, trained) if t)


FROZEN_CACHE_BYTES = 1 << 30   # above this the lower layers' states are recomputed every epoch instead


def _frozen_states(backbone, rows: list, low: int, budget: int, pad: int, device) -> dict | None:
    """The input of decoder layer ``low`` for every row (keyed by (doc, sample)), computed once: with the
    layers below ``low`` frozen and unadapted, each epoch would compute exactly these again. None when the
    model's layers cannot be run apart or the states would take more than FROZEN_CACHE_BYTES."""
    layers = getattr(backbone, "layers", None)
    hidden = getattr(getattr(backbone, "config", None), "hidden_size", None)
    if low <= 0 or not isinstance(layers, torch.nn.ModuleList) or hidden is None:
        return None
    dtype = next(p.dtype for p in backbone.parameters() if p.is_floating_point())
    if sum(len(ids) for _, (ids, _), _ in rows) * hidden * dtype.itemsize > FROZEN_CACHE_BYTES:
        return None
    captured: list[torch.Tensor] = []
    handle = layers[low - 1].register_forward_hook(
        lambda _m, _i, out: captured.append(out[0] if isinstance(out, tuple) else out))
    states = {}
    try:
        with torch.no_grad(), _only_layers(backbone, 0, low):
            for chunk in _token_chunks(rows, budget):
                ids, _, mask = _padded(chunk, pad, device)
                captured.clear()
                backbone(input_ids=ids, attention_mask=mask)
                for r, (d, (i, _), n) in enumerate(chunk):
                    states[d, n] = captured[-1][r, :len(i)].clone()
    finally:
        handle.remove()
    return states


def _accumulate(backbone, head, sp, factors, chunk, tok_count, scale, pad, device,
                frozen: tuple[int, dict] | None = None) -> torch.Tensor:
    """Forward/backward one chunk; each token's loss is divided by its document's token count for the
    whole step, so the summed gradients equal those of the step's per-document mean losses. Returns each
    document's share of that mean loss from this chunk (detached). With ``frozen`` (layer, states) the
    forward pass starts at that layer from the rows' cached states (:func:`_frozen_states`)."""
    ids, labels, mask = _padded(chunk, pad, device)
    doc_of_row = torch.tensor([d for d, _, _ in chunk], device=device)
    with sp.applied([(a[doc_of_row], b[doc_of_row]) if a.requires_grad else None for a, b in factors], scale):
        if frozen is None:
            hidden = backbone(input_ids=ids, attention_mask=mask).last_hidden_state
        else:
            low, states = frozen
            first = states[chunk[0][0], chunk[0][2]]
            embeds = first.new_zeros((len(chunk), ids.shape[1], first.shape[-1]))
            for r, (d, _, n) in enumerate(chunk):
                h = states[d, n]
                embeds[r, :h.shape[0]] = h
            with _only_layers(backbone, low, None):
                hidden = backbone(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
    tgt = labels[:, 1:]
    keep = tgt != -100
    logits = head(hidden[:, :-1][keep])
    tok_loss = torch.nn.functional.cross_entropy(logits.float(), tgt[keep], reduction="none")
    row_doc = doc_of_row.unsqueeze(1).expand_as(tgt)[keep]
    share = tok_loss / tok_count[row_doc]
    share.sum().backward()
    return torch.zeros_like(tok_count).index_add_(0, row_doc, share.detach())


@dataclass
class TrainReport:
    """What training did per document: epochs run and the mean training loss of each epoch run."""

    epochs: list[int] = field(default_factory=list)
    losses: list[list[float]] = field(default_factory=list)


def train_adapters(lm: LoadedModel, docs: list[list[Sample]], keys: list[str], s: TrainSettings,
                   report: TrainReport | None = None, cache_frozen: bool = True) -> list[dict[str, np.ndarray]]:
    """One adapter per document: {"<module>.lora_A": [r, in], "<module>.lora_B": [out, r]} in float32.

    With ``s.stop_loss`` a document stops training after the first epoch whose mean training loss fell
    below it: it has learned its samples, and later epochs would spend compute to move it little. The test
    is on the document's own losses, so it stops at the same epoch whatever it is batched with.
    With ``s.layers < 1`` the frozen lower layers run once per sample, not once per epoch (``cache_frozen``:
    the same gradients either way, tests/test_train.py)."""
    if any(not d for d in docs):
        raise ValueError("every document needs at least one training sample")
    sp = side_path(lm.model)
    device = lm.device
    # A sample longer than one chunk's token budget or the model's context would blow either: cut it to fit.
    limit = min(s.max_length, s.max_batch_tokens, budget.context_window(lm))
    encoded = [_encode(lm.tokenizer, d, limit) for d in docs]
    trained = trained_modules([name for name, _ in sp.modules], s.layers)
    factors = _init_factors(sp.shapes, keys, s, device, precision_for(device).factors, trained)
    params = [t for pair in factors for t in pair if t.requires_grad]   # Adam's moments take their dtype: fp32
    opt = _StackedAdam(params, len(docs), s.lr)
    backbone, head = lm.model.get_decoder(), lm.model.get_output_embeddings()
    pad = lm.tokenizer.pad_token_id or 0
    n = len(docs)
    done = [False] * n
    losses: list[list[float]] = [[] for _ in range(n)]
    low = lowest_trained_layer([name for name, _ in sp.modules], trained)
    frozen = None
    if cache_frozen and low > 0:
        every = [(d, enc, i) for d, x in enumerate(encoded) for i, enc in enumerate(x)]
        states = _frozen_states(backbone, every, low, s.max_batch_tokens, pad, device)
        frozen = (low, states) if states is not None else None
    for n_epoch, epoch in enumerate(_schedule([len(x) for x in encoded], keys, s)):
        opt.lr = s.lr * (1 + (s.lr_final - 1) * n_epoch / max(1, s.epochs - 1))
        loss_sum, steps = torch.zeros(n, device=device), torch.zeros(n, device=device)
        for step in epoch:
            rows = [(d, encoded[d][i], i) for d, i in step if not done[d]]
            tok_count = torch.zeros(n, device=device)        # the step's tokens per document, over all chunks
            for d, (_, labels), _ in rows:
                tok_count[d] += sum(1 for t in labels[1:] if t != -100)
            for chunk in _token_chunks(rows, s.max_batch_tokens):
                loss_sum += _accumulate(backbone, head, sp, factors, chunk, tok_count, s.scale, pad, device,
                                        frozen)
            active = tok_count > 0
            steps += active
            if rows:
                opt.step(active.cpu())
        for d, (total, count) in enumerate(zip(loss_sum.tolist(), steps.tolist())):
            if count:
                losses[d].append(total / count)
                done[d] = done[d] or (s.stop_loss > 0 and losses[d][-1] < s.stop_loss)
        if all(done):
            break
    if report is not None:
        report.epochs += [len(x) for x in losses]
        report.losses += losses
    names = [name for name, _ in sp.modules]
    out = []
    for d in range(len(docs)):
        adapter = {}
        for name, (a, b) in zip(names, factors):
            a_name, b_name = tensor_names(name)
            adapter[a_name] = a[d].detach().float().cpu().numpy()
            adapter[b_name] = b[d].detach().float().cpu().numpy()
        out.append(adapter)
    return out
