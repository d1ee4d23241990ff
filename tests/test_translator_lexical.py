"""The translator's input (a middle layer, read without running the rest of the model) and its lexical path
(attention-pooled token embeddings written into the residual stream)."""
from __future__ import annotations

import json

import pytest
import torch

from paramdb.engine import translator_blob as translators
from paramdb.errors import InvalidInput
from paramdb.knowledge.translator import (Translator, TranslatorSettings, features, lexical_modules,
                                          new_translator, translate)

from test_translator import DOCS, distilled, trained_db  # noqa: F401  (fixture)

TEXTS = ["Person 3 lives in Kellam.", "A much longer text: Person 4 bakes bread in Ostvane every single morning."]


def test_features_from_a_middle_layer_are_that_layers_hidden_states(tiny_lm):
    feats = features(tiny_lm, TEXTS[:1], TranslatorSettings(layers=(1,), lexical=1))
    ids = tiny_lm.tokenizer(TEXTS[0], add_special_tokens=False, return_tensors="pt").input_ids
    full = tiny_lm.model.get_decoder()(input_ids=ids, output_hidden_states=True).hidden_states[1]
    torch.testing.assert_close(feats.pooled, full.mean(1))
    torch.testing.assert_close(feats.states[0].float(), full[0].half().float())


def test_features_do_not_depend_on_the_order_the_documents_come_in(tiny_lm):
    s = TranslatorSettings(layers=(1, -1), lexical=1)
    ab, ba = features(tiny_lm, TEXTS, s), features(tiny_lm, TEXTS[::-1], s)
    torch.testing.assert_close(ab.pooled, ba.pooled.flip(0))
    torch.testing.assert_close(ab.embeds, ba.embeds.flip(0))
    assert ab.mask.sum(1).tolist() == ba.mask.sum(1).flip(0).tolist()


def test_lexical_path_writes_a_mix_of_the_documents_own_token_embeddings(tiny_lm):
    t = new_translator(tiny_lm, TranslatorSettings(rank=2, lexical=1))
    for p in t.head_w:                      # silence the code path: only the lexical path writes
        torch.nn.init.zeros_(p)
    torch.nn.init.ones_(t.lex_gain)
    feats = features(tiny_lm, TEXTS, t.settings)
    (m,) = t.lexical
    b = t.factors(feats)[m][1]                                           # [2, width, r]
    for d in range(2):
        emb = feats.embeds[d][feats.mask[d]].float()                     # this document's tokens [T, width]
        coef = torch.linalg.lstsq(emb.T, b[d]).solution                  # b's columns in their span?
        torch.testing.assert_close(emb.T @ coef, b[d], atol=1e-3, rtol=1e-3)
        assert torch.allclose(coef.sum(0), torch.ones(2), atol=1e-2)     # a convex mix (attention weights)


def test_lexical_path_goes_to_the_top_modules_that_write_the_residual_stream(tiny_lm):
    shapes = new_translator(tiny_lm, TranslatorSettings()).shapes
    width = tiny_lm.model.config.hidden_size
    top = lexical_modules(shapes, width, 1)
    assert len(top) == 1 and shapes[top[0]].out_features == width
    assert top[0] == max(i for i, s in enumerate(shapes) if s.out_features == width)
    assert lexical_modules(shapes, width, 0) == []


def test_a_translator_stored_before_the_lexical_path_rebuilds_without_one(tiny_lm):
    old = new_translator(tiny_lm, TranslatorSettings(rank=2))
    described = old.describe()
    settings = json.loads(described["settings"])
    del settings["lexical"]
    described = {"settings": json.dumps(settings), "feature_dim": described["feature_dim"],
                 "shapes": described["shapes"]}                         # as stored by the first release
    again = Translator.rebuild(old.tensors(), described)
    assert again.settings.lexical == 0 and not again.lexical
    a, b = (translate(tiny_lm, x, TEXTS[:1])[0] for x in (old, again))
    assert all((a[k] == b[k]).all() for k in a)


def test_distilled_lexical_translator_from_a_middle_layer_beats_no_adapter(trained_db):  # noqa: F811
    result = distilled(trained_db, translator={"lexical": 2, "layers": (1,)})
    assert result.held_out_loss < result.base_loss - 0.05, (result.held_out_loss, result.base_loss)
    stored, _ = translators.load(trained_db.handle.store.blobs, trained_db.config.model_fingerprint, "s")
    assert stored.settings.lexical == 2 and stored.settings.layers == (1,)


def test_an_unknown_translator_setting_is_refused_and_stores_nothing(trained_db):  # noqa: F811
    with pytest.raises(InvalidInput, match="unknown translator setting 'lexicon'"):
        distilled(trained_db, translator={"lexicon": 2})
    assert trained_db.stats()["translator"] is None


def test_a_negative_lexical_count_is_refused_in_one_line(trained_db):  # noqa: F811
    with pytest.raises(InvalidInput, match="lexical must be 0 or more"):
        distilled(trained_db, translator={"lexical": -1})
