"""merge="rank": the k retrieved adapters weighted 1/rank (normalised), so the best hit outweighs the rest."""
from __future__ import annotations

import torch

from paramdb.config import rank_weights
from paramdb.engine import adapters

DOCS = [{"id": "a", "text": "Zorbel is the capital of Freedonia."},
        {"id": "b", "text": "Cats purr when they are content."},
        {"id": "c", "text": "The moon orbits the earth every month."}]


def test_rank_merge_weights_each_hits_adapter_by_its_rank(db):
    db.insert(DOCS)
    hits = db.query("What is the capital of Freedonia?", k=3)
    store = db._store
    keys = [store.meta.get([h.id])[0]["blob_key"] for h in hits]
    ranked = adapters.merged(store, db.handle.models.lm, [keys], "rank", 1.0)
    mean = adapters.merged(store, db.handle.models.lm, [keys], "mean", 1.0)
    w = rank_weights(3)
    r = db.config.training.rank
    for (ra, rb), (ma, mb) in zip(ranked, mean):
        torch.testing.assert_close(ra, ma)
        for j in range(3):       # mean gives each B 1/3; rank gives it w[j]
            torch.testing.assert_close(rb[..., j * r:(j + 1) * r], mb[..., j * r:(j + 1) * r] * 3 * w[j])


def test_generate_accepts_rank_merge(db):
    db.insert(DOCS)
    answer = db.generate("What is the capital of Freedonia?", k=3, mode="prag", merge="rank", max_new_tokens=3)
    assert len(answer.hits) == 3



def first_logits(db, **kwargs) -> torch.Tensor:
    """The logits of the answer's first token, which the merged adapters shape."""
    seen: list[torch.Tensor] = []
    handle = db.handle.models.lm.model.lm_head.register_forward_hook(lambda _m, _i, out: seen.append(out[:, -1].clone()))
    try:
        db.generate("What is the capital of Freedonia?", k=3, mode="prag", max_new_tokens=1, short=False, **kwargs)
    finally:
        handle.remove()
    return seen[0]


def test_rank_is_the_default_merge(db):
    db.insert(DOCS)
    default = first_logits(db)
    torch.testing.assert_close(default, first_logits(db, merge="rank"))
    assert not torch.allclose(default, first_logits(db, merge="mean"))
