"""Shared fixtures: a tiny randomly initialised Llama (no downloads) and the packaged embedder."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from paramdb import ParamDB
from paramdb.knowledge.embed import Embedder, default_embedder_path
from paramdb.knowledge.models import prepare

FAST_TRAINING = {"epochs": 2, "rank": 2, "alpha": 4.0}


def make_tiny_lm(seed: int = 0, name: str = "tiny-llama"):
    """A 2-layer Llama over the MiniLM WordPiece vocabulary: real architecture, random weights."""
    tok = AutoTokenizer.from_pretrained(default_embedder_path())
    tok.eos_token, tok.pad_token = "[SEP]", "[PAD]"
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      eos_token_id=tok.sep_token_id, pad_token_id=tok.pad_token_id,
                      bos_token_id=tok.cls_token_id, tie_word_embeddings=True)
    torch.manual_seed(seed)
    return prepare(LlamaForCausalLM(cfg), tok, name=name)


@pytest.fixture(scope="session")
def tiny_lm():
    return make_tiny_lm()


@pytest.fixture(scope="session")
def embedder():
    return Embedder()


@pytest.fixture
def store_path(tmp_path):
    return tmp_path / "store"


@pytest.fixture
def db(store_path, tiny_lm, embedder):
    with ParamDB.open(store_path, create=True, model=tiny_lm, embedder=embedder,
                      training=FAST_TRAINING) as database:
        yield database


@pytest.fixture(autouse=True, scope="session")
def _one_thread_for_tiny_models():
    """The tiny model's matmuls are far too small to share out: threads only add contention (10x slower
    on a loaded 2-core machine). Real-model tests raise it again for themselves."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
