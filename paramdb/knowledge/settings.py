"""Settings for augmentation and training: plain values, persisted in each store's config.

Kept free of torch so reading a store's configuration (and `paramdb --help`) stays instant.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AugmentSettings:
    questions: bool = True          # LLM-written questions per sentence (else cloze prompts only)
    questions_per_sentence: int = 1 # up to one per question template (prompts.QUESTION_TEMPLATES)
    max_sentences: int = 12         # per document; long documents keep their first sentences
    max_question_tokens: int = 32
    batch_size: int = 16            # prompts per batched generation


@dataclass(frozen=True)
class TrainSettings:
    rank: int = 4
    alpha: float = 32.0
    lr: float = 5e-3
    epochs: int = 10
    samples_per_step: int = 4      # rows per document per optimizer step
    seed: int = 0
    max_length: int = 384          # tokens per sample, longer samples are cut
    max_batch_tokens: int = 2048   # padded tokens per forward/backward: bounds activation memory (~1.2 MB/token on 135M)
    stop_loss: float = 0.0         # a document stops after an epoch whose mean training loss is below this (0: never)

    @property
    def scale(self) -> float:
        return self.alpha / self.rank
