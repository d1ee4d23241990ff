"""Shared fixtures: a tiny randomly initialised Llama (no downloads) and the packaged embedder."""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from paramdb import ParamDB
from paramdb.knowledge.embed import Embedder, default_embedder_path
from paramdb.knowledge.models import prepare

FAST_TRAINING = {"epochs": 2, "rank": 2, "alpha": 4.0}


def make_tiny_lm(seed: int = 0, name: str = "tiny-llama", context: int = 512, layers: int = 2):
    """A ``layers``-layer Llama over the MiniLM WordPiece vocabulary: real architecture, random weights, a ``context``
    token window."""
    tok = AutoTokenizer.from_pretrained(default_embedder_path())
    tok.eos_token, tok.pad_token = "[SEP]", "[PAD]"
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=context,
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


@pytest.fixture(autouse=True)
def _precision_variable_left_as_found():
    """A test leaves PARAMDB_PRECISION as it found it. A leaked value reaches every later test's subprocesses:
    a leaked bf16 makes the real model emulate bf16 on a CPU without bf16 units, ~100x slower than fp32."""
    before = os.environ.get("PARAMDB_PRECISION")
    yield
    after = os.environ.get("PARAMDB_PRECISION")
    assert after == before, f"PARAMDB_PRECISION was {before!r} before the test and {after!r} after it"


# -- PostgreSQL: the metadata suite runs against SQLite and, where PARAMDB_TEST_PG_URL is set, a server ----
PG_URL = os.environ.get("PARAMDB_TEST_PG_URL")
needs_pg = pytest.mark.skipif(not PG_URL, reason="PARAMDB_TEST_PG_URL is not set (CI sets it: .ci/postgres.sh)")
META_BACKENDS = ["sqlite", pytest.param("postgresql", marks=needs_pg)]


@contextmanager
def pg_schema_url() -> Iterator[str]:
    """A URL whose tables land in a new, empty PostgreSQL schema (its search_path), dropped afterwards:
    as good as a fresh database for a test, and far cheaper to make."""
    import sqlalchemy as sa

    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(PG_URL, poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{name}"')
    try:
        yield sa.make_url(PG_URL).update_query_dict({"options": f"-csearch_path={name}"}) \
            .render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{name}" CASCADE')
        admin.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    if not PG_URL:
        pytest.skip("PARAMDB_TEST_PG_URL is not set (CI sets it: .ci/postgres.sh)")
    with pg_schema_url() as url:
        yield url


@pytest.fixture(scope="module")
def all_cores():
    """Real-model tests train for minutes: let torch use every core while they run."""
    before = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(params=META_BACKENDS)
def any_meta_url(request, tmp_path) -> Iterator[str]:
    """A fresh, empty metadata database URL: a SQLite file, then (when configured) a PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'meta.sqlite'}"
    else:
        with pg_schema_url() as url:
            yield url
