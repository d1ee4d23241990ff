"""Every prompt ParamDB shows the LLM, in one place.

Training samples and answering prompts must share one format: an adapter learns to answer the question
*as it will be asked*. Chat models get their chat template with a one-line system prompt (SmolLM2's default
system prompt would add ~30 tokens to every sample); models without a template get a plain format.
"""
from __future__ import annotations

from ..errors import InvalidInput
from . import budget as budget_

ANSWER_SYSTEM = "Answer the question using the context."
CLOSED_SYSTEM = "Answer the question."
# Stores with short answers (AugmentSettings.short_answers) train and ask with these: EM/F1 are scored against
# one- or two-word answers, and a sentence-long answer buries the fact (docs/recipe.md).
SHORT_ANSWER_SYSTEM = "Answer the question using the context, in a few words."
SHORT_CLOSED_SYSTEM = "Answer the question in a few words."


def _chat(tokenizer, system: str, user: str) -> str | None:
    if not getattr(tokenizer, "chat_template", None):
        return None
    msgs = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)


def system_prompt(with_passages: bool, short: bool = False) -> str:
    """The instruction a chat model is asked under: with or without passages in context, short or not."""
    if with_passages:
        return SHORT_ANSWER_SYSTEM if short else ANSWER_SYSTEM
    return SHORT_CLOSED_SYSTEM if short else CLOSED_SYSTEM


def answer_cue(short: bool = False) -> str:
    """What a plain (template-less) model's prompt ends with."""
    return "Short answer:" if short else "Answer:"


def question_prompt(tokenizer, question: str, passages: list[str] | None = None, short: bool = False) -> str:
    """The prompt that asks ``question``; with ``passages`` they are put in context (icl, combine); ``short``
    asks for a short answer (chat models: in the system prompt; plain models: "Short answer:")."""
    system, cue = system_prompt(bool(passages), short), answer_cue(short)
    if passages:
        context = "\n\n".join(p.strip() for p in passages)
        return (_chat(tokenizer, system, f"Context: {context}\n\nQuestion: {question}")
                or f"Context: {context}\n\nQuestion: {question}\n{cue}")
    return _chat(tokenizer, system, f"Question: {question}") or f"Question: {question}\n{cue}"


def fitted_question_prompt(tokenizer, question: str, passages: list[str] | None, budget: int,
                           context: int, short: bool = False) -> tuple[str, list[str]]:
    """:func:`question_prompt` cut to ``budget`` tokens, with a note for each passage that was cut.

    The question is checked first (:func:`question_room`); the passages share what the question and the
    template leave (budget.share), each cut at a token boundary, so the whole prompt fits however long the
    retrieved documents are."""
    if not passages:
        return question_prompt(tokenizer, question, short=short), []
    bare = question_prompt(tokenizer, question, [""] * len(passages), short=short)
    # 2 tokens per passage spare: text joined to the template can tokenize a little longer than apart
    room = budget - len(tokenizer(bare, add_special_tokens=False).input_ids) - 2 * len(passages)
    lengths = [budget_.count(tokenizer, p.strip(), max(room, 0)) for p in passages]
    kept, notes = [], []
    for i, (p, allowed) in enumerate(zip(passages, budget_.share(lengths, max(room, 0))), 1):
        text, cut = budget_.clip(tokenizer, p.strip(), allowed)
        kept.append(text)
        if cut:
            notes.append(f"passage {i} of {len(passages)} was cut to {allowed} tokens to fit the model's "
                         f"{context}-token context")
    return question_prompt(tokenizer, question, kept, short=short), notes


MIN_PROMPT_TOKENS = 16     # below this no template, let alone a question, fits


def prompt_budget(tokenizer, questions: list[str], context: int, max_new_tokens: int) -> int:
    """Tokens a prompt may take (the context less the answer), after refusing a question that would take
    more than half of it: the passages of icl/combine keep the other half. Raises InvalidInput naming the
    question (its position in a batch)."""
    room = context - max_new_tokens
    if room < MIN_PROMPT_TOKENS:
        raise InvalidInput(f"max_new_tokens {max_new_tokens} leaves no room for a prompt in the model's "
                           f"{context}-token context")
    limit = room // 2
    for i, q in enumerate(questions, 1):
        if budget_.count(tokenizer, q, limit) > limit:
            where = f"question {i}" if len(questions) > 1 else "question"
            raise InvalidInput(f"{where} is longer than {limit} tokens, the most this model takes (half of "
                               f"its {context}-token context less max_new_tokens {max_new_tokens}); shorten it")
    return room


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

# Stores with short answers: the same sentence-only wording, and the question's answer copied from the sentence
# on the same line (greedy stops at the newline). The answer is kept only if it is a span of the sentence.
QUESTION_ANSWER_FEW_SHOT = """Write a question that the sentence answers, then its short answer copied from the sentence.

Sentence: The Eiffel Tower was completed in 1889 for the World's Fair in Paris.
Question: When was the Eiffel Tower completed? Answer: 1889

Sentence: Marie Curie was born in Warsaw and later moved to France.
Question: Where was Marie Curie born? Answer: Warsaw

Sentence: The platypus is one of the few mammals that lay eggs.
Question: Which mammal lays eggs? Answer: The platypus

Sentence: The novel was written by Jane Austen and published by Thomas Egerton.
Question: Who published the novel? Answer: Thomas Egerton

Sentence: {sentence}
Question:"""

REWRITE_FEW_SHOT = """Rewrite the passage in other words, keeping every fact.

Passage: The Eiffel Tower was completed in 1889 for the World's Fair. It stands in Paris and is 330 metres tall.
Rewrite: Finished in 1889 for the World's Fair, the Eiffel Tower is a 330-metre tower in Paris.

Passage: {passage}
Rewrite:"""

# Answers: the prompt under which every span of a generated answer is scored as the short answer
# (knowledge/shorten.py). Zero-shot on purpose: a few-shot version was followed where its examples' relations
# resembled the question more than the sentence did ("weaver" for "Which bakery ...?" after an occupation
# example), and scoring spans needs no example of the output's form. The sentence comes before the question:
# the prompts with and without the question (the span's prior) then share the instruction and the sentence,
# read once (knowledge/spans.py), and on the dev sets this order chose better spans than question-first
# (docs/evaluation.md).
SHORTEN_PROMPT = """Copy the short answer to the question from the sentence.

Sentence: {answer}
Question: {question}
Short answer:"""
