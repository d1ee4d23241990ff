"""``paramdb eval``: a QA benchmark file against a store (built from the file's passages when needed)."""
from __future__ import annotations

from pathlib import Path

import click

from paramdb import plots
from paramdb.evaluation import runner
from paramdb.config import MODES

from . import commands
from .output import say
from .options import (adapter_weight_option, device_option, full_option, json_option, k_option, merge_option,
                      method_option)


@click.command(name="eval")
@click.argument("data", type=click.Path(exists=True, dir_okay=False))
@click.option("--store", default=None, metavar="DIR",
              help="Store to build or reuse (default: DATA's name + .store beside the working directory).")
@click.option("--modes", default=",".join(("closed", "icl", "prag", "combine")), show_default=True,
              help=f"Comma-separated modes among {', '.join(MODES)}.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N items.")
@k_option
@method_option
@click.option("--distractors", is_flag=True, help="Add the items' distractor passages to the store.")
@click.option("--retrieval-only", is_flag=True,
              help="Only recall@k of every retrieval method: no store, no adapters (minutes, not hours).")
@click.option("--predictions", default=None, metavar="FILE", help="Per-item predictions (JSONL, resumed).")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@merge_option
@adapter_weight_option
@full_option
@click.option("--plot", default=None, type=click.Path(dir_okay=False), metavar="FILE.png",
              help="Also draw EM/F1 and seconds per question per mode (needs paramdb[plot]).")
@device_option
@json_option
def eval_(data, store, modes, limit, k, method, distractors, retrieval_only, predictions, batch_size, merge,
          adapter_weight, full, plot, device, as_json):
    """Score each mode on DATA (JSONL with question, answers, passages): EM-in-output, token F1,
    recall@k of the gold passages, seconds per question. Rerunning reuses the store and resumes.

    \b
    Examples:
      paramdb eval tools/data/eval/popqa_dev.jsonl --limit 100 -k 3
      paramdb eval tools/data/eval/hotpotqa_dev.jsonl --retrieval-only --distractors
      paramdb eval tools/data/eval/popqa_dev.jsonl --limit 20 --plot popqa.png
    """
    if plot is not None:
        if retrieval_only:
            raise click.UsageError("--plot draws the QA modes; --retrieval-only has none")
        plots.check_target(plot)                # before hours of work, not after
    if retrieval_only:
        result = runner.retrieval_only(data, k=k, limit=limit, distractors=distractors,
                                         report=lambda msg: say(msg, err=True))
        if as_json:
            commands.echo_json(result)
        else:
            say(f"{result['items']} items, {result['passages']} passages, k={k}")
            for key in ("recall_at_k", "hit_at_k", "first_gold_at_k"):
                say(f"  {key:16s} " + ", ".join(f"{m} {v:.3f}" for m, v in result[key].items()))
        return
    store = store or Path(data).stem + ".store"
    with commands.open_db(store, create=True, device=device) as db:
        result = runner.run(db, data, [m.strip() for m in modes.split(",") if m.strip()], k=k, limit=limit,
                              distractors=distractors, method=method, predictions=predictions,
                              batch_size=batch_size, merge=merge, adapter_weight=adapter_weight, short=not full,
                              report=lambda msg: say(msg, err=True))
    if plot is not None:
        plots.eval_figure(result, plot)
    if as_json:
        commands.echo_json(result)
        return
    say(f"{result['items']} items, k={k}, {method} retrieval: recall@{k} {result['recall_at_k']:.3f}")
    say(f"{'mode':8s} {'EM':>6s} {'F1':>6s} {'s/q':>6s} {'EM of whole generation':>23s}")
    for mode, m in result["modes"].items():
        say(f"{mode:8s} {m['em']:6.3f} {m['f1']:6.3f} {m['s_per_q']:6.2f} {m['em_generation']:23.3f}")
    for pair, d in result["paired"].items():
        say(f"{pair}: " + ", ".join(f"{m.upper()} {x['diff']:+.3f} [{x['ci95'][0]:+.3f}, {x['ci95'][1]:+.3f}]"
                                    for m, x in d.items()) + " (95% paired bootstrap)")
    say(f"predictions: {result['predictions']}")
