"""A GGUF file of a tiny random Llama, for tests of GGUF conversion that must not cost the real model's ~30 s.

Its tokenizer is the packaged SmolLM2 GGUF's (copied field by field, so transformers reads it as it reads the
real one); its weights are random float32 tensors of a 2-layer, 16-wide Llama under llama.cpp's names.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

HIDDEN, FFN, LAYERS, HEADS, KV_HEADS = 16, 32, 2, 2, 1


def _copy_field(writer, field) -> None:
    import gguf

    kind = field.types[0]
    if kind == gguf.GGUFValueType.ARRAY:
        sub = field.types[-1]
        values = [field.parts[i].tobytes().decode() if sub == gguf.GGUFValueType.STRING
                  else field.parts[i].tolist()[0] for i in field.data]
        writer.add_array(field.name, values)
    elif kind == gguf.GGUFValueType.STRING:
        writer.add_string(field.name, field.parts[field.data[0]].tobytes().decode())
    else:
        writer.add_key_value(field.name, field.parts[field.data[0]].tolist()[0], kind)


def write_tiny_gguf(source: Path, dest: Path, seed: int = 0) -> Path:
    """Write ``dest``: ``source``'s tokenizer and chat template, tiny random weights."""
    import gguf

    reader = gguf.GGUFReader(str(source))
    vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    w = gguf.GGUFWriter(str(dest), "llama")
    w.add_block_count(LAYERS)
    w.add_context_length(256)
    w.add_embedding_length(HIDDEN)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(vocab)
    w.add_rope_dimension_count(HIDDEN // HEADS)
    for name, field in reader.fields.items():
        if name.startswith("tokenizer."):
            _copy_field(w, field)
    rng = np.random.default_rng(seed)

    def rand(*shape):
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    kv = HIDDEN // HEADS * KV_HEADS
    w.add_tensor("token_embd.weight", rand(vocab, HIDDEN))
    w.add_tensor("output_norm.weight", np.ones(HIDDEN, np.float32))
    for b in range(LAYERS):
        for name, t in {"attn_norm": np.ones(HIDDEN, np.float32), "ffn_norm": np.ones(HIDDEN, np.float32),
                        "attn_q": rand(HIDDEN, HIDDEN), "attn_k": rand(kv, HIDDEN), "attn_v": rand(kv, HIDDEN),
                        "attn_output": rand(HIDDEN, HIDDEN), "ffn_gate": rand(FFN, HIDDEN),
                        "ffn_up": rand(FFN, HIDDEN), "ffn_down": rand(HIDDEN, FFN)}.items():
            w.add_tensor(f"blk.{b}.{name}.weight", t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return dest
