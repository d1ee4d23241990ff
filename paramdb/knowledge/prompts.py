"""Every prompt ParamDB shows the LLM, in one place.

Training samples and answering prompts must share one format: an adapter learns to answer the question
*as it will be asked*. Chat models get their chat template with a one-line system prompt (SmolLM2's default
system prompt would add ~30 tokens to every sample); models without a template get a plain format.
"""
from __future__ import annotations

ANSWER_SYSTEM = "Answer the question using the context."
CLOSED_SYSTEM = "Answer the question."


def _chat(tokenizer, system: str, user: str) -> str | None:
    if not getattr(tokenizer, "chat_template", None):
        return None
    msgs = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)


def question_prompt(tokenizer, question: str, passages: list[str] | None = None) -> str:
    """The prompt that asks ``question``; with ``passages`` they are put in context (icl, combine)."""
    if passages:
        context = "\n\n".join(p.strip() for p in passages)
        return (_chat(tokenizer, ANSWER_SYSTEM, f"Context: {context}\n\nQuestion: {question}")
                or f"Context: {context}\n\nQuestion: {question}\nAnswer:")
    return _chat(tokenizer, CLOSED_SYSTEM, f"Question: {question}") or f"Question: {question}\nAnswer:"


def answer_suffix(tokenizer) -> str:
    """What ends a trained answer, so the adapted model learns to stop."""
    return tokenizer.eos_token or "\n"


# Few-shot, no chat template: the 135M model writes parseable questions this way (docs/design.md).
QUESTION_FEW_SHOT = """Write a question that the sentence answers. Use names, not pronouns.

Passage: Marie Curie was born in Warsaw. She won two Nobel Prizes.
Sentence: She won two Nobel Prizes.
Question: How many Nobel Prizes did Marie Curie win?

Passage: The Eiffel Tower stands in Paris. It was completed in 1889 for the World's Fair.
Sentence: It was completed in 1889 for the World's Fair.
Question: When was the Eiffel Tower completed?

Passage: The platypus lives in eastern Australia. It is one of the few mammals that lay eggs.
Sentence: The platypus lives in eastern Australia.
Question: Where does the platypus live?

Passage: {passage}
Sentence: {sentence}
Question:"""

# With only the sentence in view the model asks other questions than with the passage.
QUESTION_FEW_SHOT_SENTENCE = """Write a question that the sentence answers.

Sentence: The Eiffel Tower was completed in 1889 for the World's Fair in Paris.
Question: When was the Eiffel Tower completed?

Sentence: Marie Curie was born in Warsaw and later moved to France.
Question: Where was Marie Curie born?

Sentence: The platypus is one of the few mammals that lay eggs.
Question: What is unusual about how the platypus reproduces?

Sentence: {sentence}
Question:"""

# Measured on tools/data/fictional.jsonl (20 documents, 40 questions, 10 epochs): the sentence-only wording
# injected 30/40, the passage-aware one 19/40; the first template is the default (questions_per_sentence=1).
QUESTION_TEMPLATES = (QUESTION_FEW_SHOT_SENTENCE, QUESTION_FEW_SHOT)

REWRITE_FEW_SHOT = """Rewrite the passage in other words, keeping every fact.

Passage: The Eiffel Tower was completed in 1889 for the World's Fair. It stands in Paris and is 330 metres tall.
Rewrite: Finished in 1889 for the World's Fair, the Eiffel Tower is a 330-metre tower in Paris.

Passage: {passage}
Rewrite:"""
