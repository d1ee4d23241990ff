"""Short-answer extractions compared offline on saved generations: no adapters, no store, only the base model.

    python tools/eval_shorten.py PREDICTIONS.jsonl [...] [--data DATA.jsonl ...] [--cache DIR] [--json]

Each predictions file holds rows with "mode", "id", "question" and "generation" (``paramdb eval
--predictions`` and ``tools/eval_fictional.py --predictions`` write them); gold answers come from the row's
"answers" or, by id, from ``--data`` (an eval set, or a fictional-shaped file whose ids are
"<document>#<question number>"). Spans are scored once per prompt (cached under ``--cache``), then every
extraction variant is scored against the same rows: short EM and F1 per mode, beside EM of the whole
generation, with the paired difference short − generation EM (95% bootstrap interval). A row "saved" scores the
short answer the file was written with (its "prediction").
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import defaultdict
from pathlib import Path
from statistics import mean

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from paramdb.evaluation import em_in_output, paired_bootstrap, token_f1  # noqa: E402
from paramdb.knowledge import prompts, shorten, spans  # noqa: E402

# The few-shot prompt the extractor used before span selection (seven examples), kept to compare against.
SHORTEN_FEW_SHOT = """Copy the short answer to the question from the sentence.

Question: Where was Marie Curie born?
Sentence: Marie Curie was born in Warsaw and later moved to France.
Short answer: Warsaw

Question: When was the Eiffel Tower completed?
Sentence: The Eiffel Tower was completed in 1889 for the World's Fair in Paris.
Short answer: 1889

Question: Who published the novel Pride and Prejudice?
Sentence: Pride and Prejudice was written by Jane Austen and published by Thomas Egerton.
Short answer: Thomas Egerton

Question: What is Ada Lovelace's occupation?
Sentence: Ada Lovelace was an English mathematician who wrote the first program.
Short answer: mathematician

Question: Who designed the Brooklyn Bridge?
Sentence: The Brooklyn Bridge was designed by the engineer John Roebling.
Short answer: John Roebling

Question: What is the name of the dog in the novel?
Sentence: In the novel the boy owns a large black dog called Bullseye.
Short answer: Bullseye

Question: What does the giant panda eat?
Sentence: The giant panda eats almost nothing but fresh bamboo.
Short answer: fresh bamboo

Question: {question}
Sentence: {answer}
Short answer:"""


# The zero-shot prompt with the question before the sentence (the default's order until the sentence moved first).
QUESTION_FIRST = """Copy the short answer to the question from the sentence.

Question: {question}
Sentence: {answer}
Short answer:"""


# Few-shot examples whose relations no evaluation set asks (lengths, crops, instruments, materials, counts), each
# sentence holding a distracting date or name: they show the form of a short answer, not a relation to copy.
VARIED_FEW_SHOT = """Copy the short answer to the question from the sentence.

Sentence: The Selwyn Tunnel, which opened in 1904, runs for 3 kilometres under the Harrow Hills.
Question: How long is the Selwyn Tunnel?
Short answer: 3 kilometres

Sentence: On the terraces above the valley of Montal the farmers grew barley and rye for the winter.
Question: What did the farmers of Montal grow on the terraces?
Short answer: barley and rye

Sentence: Tomas Ferrer joined the Lindell Quartet in 2010 and plays the cello, while his sister Ana sings.
Question: Which instrument does Tomas Ferrer play?
Short answer: the cello

Sentence: The footbridge over the Ashby Canal is made of cast iron and was restored by Peter Hale in 1998.
Question: What is the Ashby footbridge made of?
Short answer: cast iron

Sentence: Built by the Morrow family in 1872, the Marlow Hotel has 48 rooms and a walled garden.
Question: How many rooms does the Marlow Hotel have?
Short answer: 48

Sentence: {answer}
Question: {question}
Short answer:"""

TEMPLATES = {"default": prompts.SHORTEN_PROMPT, "question-first": QUESTION_FIRST, "fewshot": SHORTEN_FEW_SHOT,
             "varied": VARIED_FEW_SHOT}


def gold_of(paths: list[str]) -> dict[str, list[str]]:
    out = {}
    for p in paths:
        for line in open(p, encoding="utf-8"):
            if not line.strip():
                continue
            row = json.loads(line)
            if "questions" in row:
                for n, q in enumerate(row["questions"]):
                    out[f"{row['id']}#{n}"] = q["a"]
            else:
                out[row["id"]] = row["answers"]
    return out


def load_rows(paths: list[str], gold: dict) -> list[dict]:
    rows = []
    for p in paths:
        name = Path(p).name.split(".")[0]
        for line in open(p, encoding="utf-8"):
            if line.strip():
                r = json.loads(line)
                r["answers"] = r.get("answers") or gold[r["id"]]
                r["set"] = name
                rows.append(r)
    return rows


def _key(*parts) -> str:
    return hashlib.sha1(json.dumps(parts).encode()).hexdigest()[:16]


def scored(lm, rows, template: str, cache: Path) -> tuple[list, list]:
    """Spans of each row's generation under ``template``, with its question and without it (the prior)."""
    path = cache / f"{_key('v2', template, spans.MAX_SPAN_WORDS, sorted(spans.FUNCTION_WORDS))}.jsonl"
    have = {}
    if path.exists():
        for line in open(path):
            k, v = json.loads(line)
            have[k] = v
    keys = [_key(r["question"], r["generation"]) for r in rows]
    todo = [i for i, k in enumerate(keys) if k not in have]
    if todo:
        print(f"scoring {len(todo)} generations", file=sys.stderr)
        with open(path, "a") as f:
            for c in range(0, len(todo), 32):
                chunk = todo[c:c + 32]
                got = shorten.score(lm, [rows[i]["question"] for i in chunk], [rows[i]["generation"] for i in chunk],
                                    template=template, prior=True)
                for i, g in zip(chunk, got):
                    v = None if g is None else [[list(s.__dict__.values()) for s in part] for part in g]
                    have[keys[i]] = v
                    f.write(json.dumps([keys[i], v]) + "\n")
    both = [None if have[k] is None else [[spans.Span(*x) for x in part] for part in have[k]] for k in keys]
    return [b and b[0] for b in both], [b and b[1] for b in both]


VARIANTS = {
    "generation": None, "clause (PRAG cut)": "clause", "saved": "saved", "legacy few-shot copy": "legacy",
    "default (shorten.DEFAULT_CHOICE)": ("default", shorten.DEFAULT_CHOICE),
}


def legacy_copy(lm, rows, cache: Path) -> list[str]:
    """The extractor before span selection: greedy copy after SHORTEN_FEW_SHOT, kept only if a span of the
    generation, not a repeat of the question and not cut at its 16-token limit (cached like the scores)."""
    from paramdb.knowledge import budget
    from paramdb.knowledge.generate import greedy

    path = cache / "legacy.jsonl"
    have = dict(json.loads(line) for line in open(path)) if path.exists() else {}
    keys = [_key(r["question"], r["generation"]) for r in rows]
    todo = [i for i, k in enumerate(keys) if k not in have]
    if todo:
        print(f"legacy copy of {len(todo)} generations", file=sys.stderr)
    with open(path, "a") as f:
        for c in range(0, len(todo), 8):
            chunk = todo[c:c + 8]
            ps = [SHORTEN_FEW_SHOT.format(question=rows[i]["question"], answer=budget.clip(
                lm.tokenizer, " ".join(rows[i]["generation"].split()), 128)[0]) for i in chunk]
            for i, line in zip(chunk, greedy(lm, ps, 16)):
                g, out = rows[i]["generation"], rows[i]["generation"]
                span = shorten.span_of(line, g)
                if g.strip() and len(lm.tokenizer(line, add_special_tokens=False).input_ids) < 15 and span \
                        and not shorten.repeats_question(span, rows[i]["question"]):
                    out = span
                have[keys[i]] = out
                f.write(json.dumps([keys[i], out]) + "\n")
    return [have[k] for k in keys]


def variants() -> dict:
    out = {}
    for tmpl in TEMPLATES:
        for prior in (0.0, 0.5, 1.0):
            for cue in (0.0, 0.5, 1.0):
                for near in (0.0, 0.3, 0.6):
                    for margin in (0.0, 0.2, 0.4, 0.6, 0.8, 1.2):
                        for fb in ("whole", "clause", "cover"):
                            if fb == "clause" and margin == 0.0:
                                continue
                            out[f"{tmpl} prior={prior} cue={cue} near={near} margin={margin} {fb}"] = \
                                (tmpl, shorten.Choice(cue_bonus=cue, near_bonus=near, prior=prior, margin=margin,
                                                      fallback=fb))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("predictions", nargs="+")
    ap.add_argument("--data", nargs="*", default=[])
    ap.add_argument("--cache", default="out/shorten/cache")
    ap.add_argument("--templates", default="default,question-first")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--show", help="print the answers of this variant")
    ap.add_argument("--legacy", action="store_true", help="also run the previous extractor (a greedy copy after seven few-shot examples)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import torch

    from paramdb.knowledge.models import load_model
    torch.set_num_threads(1)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    rows = load_rows(args.predictions, gold_of(args.data))
    lm = load_model()
    tmpls = list(dict.fromkeys(["default"] + args.templates.split(",")))
    asked, unasked = {}, {}
    for t in tmpls:
        asked[t], unasked[t] = scored(lm, rows, TEMPLATES[t], cache)
    legacy = legacy_copy(lm, rows, cache) if args.legacy else [r["generation"] for r in rows]
    groups = defaultdict(list)
    for i, r in enumerate(rows):
        groups[(r["set"], r["mode"])].append(i)
    gen_em = [float(em_in_output(r["generation"], r["answers"])) for r in rows]

    def answers_of(name, spec):
        if spec is None:
            return [r["generation"] for r in rows]
        if spec == "clause":
            return [shorten.first_clause(r["generation"]) for r in rows]
        if spec == "saved":
            return [r.get("prediction", r["generation"]) for r in rows]
        if spec == "legacy":
            return legacy

        tmpl, choice = spec
        return [r["generation"] if asked[tmpl][i] is None else
                shorten.choose(r["question"], r["generation"], asked[tmpl][i], choice, unasked[tmpl][i])
                for i, r in enumerate(rows)]

    table = {}
    all_v = {**VARIANTS, **{k: v for k, v in variants().items() if v[0] in tmpls}}
    for name, spec in all_v.items():
        ans = answers_of(name, spec)
        em = [float(em_in_output(a, r["answers"])) for a, r in zip(ans, rows)]
        f1 = [token_f1(a, r["answers"]) for a, r in zip(ans, rows)]
        per = {}
        for g, idx in groups.items():
            per["/".join(g)] = {"em": mean(em[i] for i in idx), "f1": mean(f1[i] for i in idx),
                                "gen_em": mean(gen_em[i] for i in idx),
                                "gap": mean(em[i] - gen_em[i] for i in idx)}
        worst = min(v["gap"] for v in per.values())
        table[name] = {"groups": per, "worst_gap": worst, "mean_f1": mean(v["f1"] for v in per.values()),
                       "mean_em": mean(v["em"] for v in per.values())}
        if name == args.show:
            for a, r, e in zip(ans, rows, em):
                print(f"{'+' if e else '-'} [{r['set']}/{r['mode']}] {r['question']} -> {a!r}  [{r['generation'][:90]}]")
    names = sorted(table, key=lambda n: (-table[n]["mean_f1"]))
    ok = [n for n in names if table[n]["worst_gap"] >= -0.03]
    print("group sizes:", {"/".join(g): len(i) for g, i in groups.items()})
    print(f"{'variant':48s} {'meanF1':>7s} {'meanEM':>7s} {'worst':>6s}  per group EM/F1 (gen EM)")
    for n in list(VARIANTS) + [x for x in ok if x not in VARIANTS][:args.top] + \
            ["-- failing the margin --"] + [x for x in names if x not in ok and x not in VARIANTS][:8]:
        if n not in table:
            print(n)
            continue
        t = table[n]
        cells = " ".join(f"{g}:{v['em']:.2f}/{v['f1']:.2f}({v['gen_em']:.2f})" for g, v in t["groups"].items())
        print(f"{n:48s} {t['mean_f1']:7.3f} {t['mean_em']:7.3f} {t['worst_gap']:+6.3f}  {cells}")
    if args.json:
        def detail(name):
            ans, out = answers_of(name, all_v[name]), {}
            for g, idx in groups.items():
                short = [float(em_in_output(ans[i], rows[i]["answers"])) for i in idx]
                out["/".join(g)] = {"n": len(idx), "short_em": mean(short),
                                    "short_f1": mean(token_f1(ans[i], rows[i]["answers"]) for i in idx),
                                    "generation_em": mean(gen_em[i] for i in idx),
                                    "short_minus_generation": paired_bootstrap(short, [gen_em[i] for i in idx])}
            return out
        best = ok[0] if ok else names[0]
        report = {"best": best, "groups": detail(best), "default": detail("default (shorten.DEFAULT_CHOICE)")}
        if args.legacy:
            report["legacy"] = detail("legacy few-shot copy")
        print(json.dumps(report))


if __name__ == "__main__":
    main()
