"""Does ParamDB insert and answer on this machine's GPU, in which precision, and how fast?

    python tools/gpu_check.py [--docs 8] [--questions 8] [--model PATH] [--json]

On a machine without CUDA it says "no CUDA device" and exits 0 (nothing to check). With one: loads the model
on the GPU (bf16 base weights, fp16 where bf16 is unsupported; LoRA factors and optimizer state fp32:
paramdb/knowledge/precision.py), inserts the first N fictional documents (tools/data/fictional.jsonl) into a
temporary store, asks their questions in closed and prag mode (k=1) and prints: dtypes, seconds per document
(insert, end to end), seconds per question per mode, accuracy (an answer alias in the output) and peak GPU
memory. With ``--json`` the last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).parent / "data" / "fictional.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=8)
    ap.add_argument("--questions", type=int, default=8, help="questions asked per mode (the documents' own)")
    ap.add_argument("--model", default=None, help="base model folder or GGUF (default: SmolLM2-135M-Instruct)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check (ParamDB runs in fp32 on this CPU)")
        if args.json:
            print(json.dumps({"cuda": False}))
        return

    from paramdb import ParamDB
    from paramdb.knowledge.models import load_model
    from paramdb.knowledge.precision import model_dtype, precision_for

    items = [json.loads(line) for line in open(DATA) if line.strip()][:args.docs]
    qs = [(q["q"], q["a"]) for it in items for q in it["questions"]][:args.questions]
    tmp = Path(tempfile.mkdtemp(prefix="paramdb-gpu-check-"))
    try:
        t0 = time.perf_counter()
        lm = load_model(args.model, "cuda")
        load_s = time.perf_counter() - t0
        torch.cuda.reset_peak_memory_stats()
        with ParamDB.open(tmp / "store", create=True, model=lm) as db:
            t0 = time.perf_counter()
            db.insert([{"id": it["id"], "text": it["text"]} for it in items])
            torch.cuda.synchronize()
            insert_s = time.perf_counter() - t0
            modes = {}
            for mode in ("closed", "prag"):
                db.generate_batch([qs[0][0]], k=1, mode=mode)       # warm-up, untimed
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                answers = db.generate_batch([q for q, _ in qs], k=1, mode=mode)
                torch.cuda.synchronize()
                secs = time.perf_counter() - t0
                hits = sum(any(a.lower() in ans.text.lower() for a in al) for ans, (_, al) in zip(answers, qs))
                modes[mode] = {"s_per_question": round(secs / len(qs), 4), "accuracy": round(hits / len(qs), 3)}
        result = {"cuda": True, "device": torch.cuda.get_device_name(0),
                  "weights_dtype": str(model_dtype(lm.model)), "factors_dtype": str(precision_for("cuda").factors),
                  "model_load_s": round(load_s, 1), "docs": len(items), "insert_s_per_doc": round(insert_s / len(items), 3),
                  "questions": len(qs), "modes": modes,
                  "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{result['device']}: base weights {result['weights_dtype']}, LoRA factors {result['factors_dtype']}")
    print(f"insert: {result['docs']} docs, {result['insert_s_per_doc']:.2f} s/doc end to end "
          f"(model load {result['model_load_s']} s, not counted)")
    for mode, m in modes.items():
        print(f"{mode:7s} {m['s_per_question'] * 1e3:8.1f} ms/question (batched), accuracy {m['accuracy']:.3f} "
              f"on {len(qs)} questions")
    print(f"peak GPU memory {result['peak_gpu_mb']} MB")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
