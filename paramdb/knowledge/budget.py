"""Token budgets: nothing reaches the model longer than its context window.

A document, passage or question can be any length (a 1 MB text without a full stop is one "sentence"), but
the model reads at most its context: past it a prompt costs memory and time quadratic in its length and the
positions are ones the model never saw. Every prompt is therefore cut to a budget in tokens before it is
tokenized for the model, and only a bounded prefix of any text is ever tokenized to measure it.
"""
from __future__ import annotations

# No token of a real vocabulary spans more characters than this, so a text's first ``n * CHARS_PER_TOKEN``
# characters hold at least its first ``n`` tokens: measuring or cutting a huge text tokenizes only that much.
CHARS_PER_TOKEN = 32
FALLBACK_CONTEXT = 2048      # a model that declares no context length
_UNBOUNDED = 10 ** 8         # tokenizers without a limit report ~1e30 as model_max_length


def context_window(lm) -> int:
    """Tokens the model can attend over: its position limit, or its tokenizer's, whichever is smaller."""
    config = getattr(lm.model, "config", None)
    limits = [getattr(config, name, None) for name in ("max_position_embeddings", "n_positions")]
    limits.append(getattr(lm.tokenizer, "model_max_length", None))
    found = [int(x) for x in limits if isinstance(x, int) and 0 < x < _UNBOUNDED]
    return min(found) if found else FALLBACK_CONTEXT


def token_ids(tokenizer, text: str, cap: int) -> list[int]:
    """The ids of ``text``'s first tokens: at least ``cap`` of them when it has that many (bounded work)."""
    return tokenizer(text[:cap * CHARS_PER_TOKEN], add_special_tokens=False).input_ids


def count(tokenizer, text: str, cap: int) -> int:
    """Tokens in ``text``, counted up to ``cap`` (a longer text reports at least ``cap``)."""
    return len(token_ids(tokenizer, text, cap)) if len(text) <= cap * CHARS_PER_TOKEN else cap + 1


def clip(tokenizer, text: str, max_tokens: int) -> tuple[str, bool]:
    """``text`` cut to at most ``max_tokens`` tokens (at a token boundary), and whether it was cut."""
    if max_tokens <= 0:
        return "", bool(text)
    ids = token_ids(tokenizer, text, max_tokens + 1)
    if len(ids) <= max_tokens and len(text) <= (max_tokens + 1) * CHARS_PER_TOKEN:
        return text, False
    cut = tokenizer.decode(ids[:max_tokens], skip_special_tokens=True).strip()
    while cut and len(tokenizer(cut, add_special_tokens=False).input_ids) > max_tokens:
        cut = cut[:-1]          # decoding and re-encoding may merge differently; shrink until it fits
    return cut, True


def share(lengths: list[int], room: int) -> list[int]:
    """Split ``room`` tokens over texts of ``lengths``: short ones keep all they have, the rest share
    equally what is left (water-filling), so one huge passage cannot crowd out the others."""
    out = [0] * len(lengths)
    left, order = room, sorted(range(len(lengths)), key=lambda i: lengths[i])
    for n, i in enumerate(order):
        out[i] = max(0, min(lengths[i], left // (len(order) - n)))
        left -= out[i]
    return out
