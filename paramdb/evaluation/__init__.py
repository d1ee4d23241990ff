"""Evaluating a store on QA benchmarks: the items and their corpus (data), how answers are scored (scoring), and
the run that builds the store, asks every question per mode and resumes (runner, ``paramdb eval``)."""
from .data import EvalItem, corpus, gold_ids, load_items, passage_id
from .scoring import em_in_output, normalize_answer, paired_bootstrap, recall_at_k, score, token_f1

__all__ = ["EvalItem", "corpus", "gold_ids", "load_items", "passage_id", "em_in_output", "normalize_answer",
           "paired_bootstrap", "recall_at_k", "score", "token_f1"]
