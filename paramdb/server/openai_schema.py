"""OpenAI's request and response shapes, mapped onto ParamDB's answers.

The model name picks the mode (``paramdb-prag``, ``paramdb-icl``, ``paramdb-combine``, ``paramdb-closed``).
A chat request's question is its last user message (earlier turns are not read: ParamDB answers questions,
it does not hold conversations); a completion's is its prompt. ParamDB's own options travel as extra body
fields, as the ``openai`` client's ``extra_body`` sends them: ``k``, ``where``, ``merge``,
``adapter_weight``, ``short`` and ``method``. Decoding is always greedy, so sampling fields (temperature,
top_p, seed, ...) are accepted and have no effect; ``n`` above 1 is refused, since every choice would be the
same. ``usage`` counts tokens with the model's tokenizer: the question as the prompt, the model's whole
generation as the completion (``choices[].text`` may be the short answer copied out of it).
"""
from __future__ import annotations

import time
import uuid
from typing import Any

from paramdb.config import DEFAULT_MERGE, MERGES, MODES
from paramdb.retrieval import METHODS
from paramdb.types import Answer

from paramdb.options import AnswerOptions

from .batching import Answered
from .errors import HTTPError
from .settings import ServerSettings

PREFIX = "paramdb-"
MODELS = {PREFIX + m: m for m in MODES}
DEFAULT_MAX_TOKENS = 48
CREATED = int(time.time())


def models_list() -> dict:
    return {"object": "list", "data": [{"id": name, "object": "model", "created": CREATED, "owned_by": "paramdb"}
                                       for name in MODELS]}


def bad(message: str, code: str | None = None) -> HTTPError:
    return HTTPError(400, message, "invalid_request_error", code)


def _object(body: Any) -> dict:
    if not isinstance(body, dict):
        raise bad(f"the request body must be a JSON object, got {type(body).__name__}")
    return body


def mode_for(body: dict) -> str:
    model = body.get("model")
    if not isinstance(model, str):
        raise bad("'model' is required: one of " + ", ".join(MODELS))
    if model not in MODELS:
        raise HTTPError(404, f"unknown model {model!r}; valid: {', '.join(MODELS)}", "invalid_request_error",
                        "model_not_found")
    return MODELS[model]


def _int(body: dict, name: str, default: int, low: int, high: int) -> int:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(f"'{name}' must be an integer, got {value!r}")
    if not low <= value <= high:
        raise bad(f"'{name}' must be between {low} and {high}, got {value}")
    return value


def options(body: dict, mode: str, settings: ServerSettings, *, default_k: int = 3) -> AnswerOptions:
    """The extra body fields as generate_batch options, checked here so a bad one is a 400 naming it."""
    k = _int(body, "k", default_k, 1, settings.max_k)
    given = body.get("max_completion_tokens", body.get("max_tokens"))
    max_new = _int({"max_tokens": given}, "max_tokens", DEFAULT_MAX_TOKENS, 1, settings.max_tokens)
    where = body.get("where")
    if where is not None and not isinstance(where, dict):
        raise bad(f"'where' must be a JSON object (a metadata filter), got {type(where).__name__}")
    merge = body.get("merge", DEFAULT_MERGE)
    if merge not in MERGES:
        raise bad(f"unknown merge {merge!r}; valid: {', '.join(MERGES)}")
    method = body.get("method", "hybrid")
    if method not in METHODS:
        raise bad(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    weight = body.get("adapter_weight")
    if weight is not None and (isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0
                               or weight != weight or weight == float("inf")):
        raise bad(f"'adapter_weight' must be a number of 0 or more, got {weight!r}")
    short = body.get("short", True)
    if not isinstance(short, bool):
        raise bad(f"'short' must be true or false, got {short!r}")
    n = body.get("n", 1)
    if n != 1:
        raise bad(f"'n' must be 1: answers are greedy, so every choice would be the same (got {n!r})")
    return AnswerOptions(where=where, mode=mode, k=k, merge=merge, method=method,
                         adapter_weight=None if weight is None else float(weight), short=short,
                         max_new_tokens=max_new)


def _text(content: Any, where: str) -> str:
    """A message's content: a string, or OpenAI's list of parts whose text parts are joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        texts = [p.get("text") for p in content if p.get("type") == "text"]
        if texts and all(isinstance(t, str) for t in texts):
            return "\n".join(texts)
    raise bad(f"{where} must be a string or a list of text parts")


def chat_request(body: Any, settings: ServerSettings) -> tuple[str, str, AnswerOptions]:
    """(model, question, options) of a chat completion request."""
    body = _object(body)
    mode = mode_for(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise bad("'messages' must be a non-empty list of {\"role\", \"content\"} objects")
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    if not users:
        raise bad("'messages' holds no user message: the last user message is the question")
    question = _text(messages[users[-1]].get("content"), f"messages[{users[-1]}].content")
    return body["model"], question, options(body, mode, settings)


def completion_request(body: Any, settings: ServerSettings) -> tuple[str, list[str], AnswerOptions]:
    """(model, questions, options) of a completion request: a prompt or a list of prompts, one choice each."""
    body = _object(body)
    mode = mode_for(body)
    prompt = body.get("prompt")
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise bad("'prompt' must be a string or a non-empty list of strings")
    if len(prompts) > settings.max_batch:
        raise bad(f"'prompt' holds {len(prompts)} prompts; at most {settings.max_batch} per request")
    return body["model"], prompts, options(body, mode, settings)


def stream_flags(body: dict) -> tuple[bool, bool]:
    """(stream, include_usage)."""
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad(f"'stream' must be true or false, got {stream!r}")
    extra = body.get("stream_options") or {}
    return stream, bool(isinstance(extra, dict) and extra.get("include_usage"))


# ------------------------------------------------------------------------------------ responses
def usage(done: list[Answered]) -> dict:
    prompt = sum(d.prompt_tokens for d in done)
    completion = sum(d.completion_tokens for d in done)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def finish_reason(done: Answered, max_new_tokens: int) -> str:
    """"length" when the generation used every token it was allowed, else "stop" (newline or end token)."""
    return "length" if done.completion_tokens >= max_new_tokens else "stop"


def paramdb_field(answer: Answer) -> dict:
    return {"mode": answer.mode, "generation": answer.generation, "notes": list(answer.notes),
            "hits": [{"id": h.id, "score": h.score, "adapter": h.adapter_kind} for h in answer.hits]}


def new_id(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:24]}"


def chat_response(model: str, answer: Answer, usage_: dict, finish: str) -> dict:
    return {"id": new_id("chatcmpl"), "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text},
                         "finish_reason": finish, "logprobs": None}],
            "usage": usage_, "paramdb": paramdb_field(answer)}


def completion_response(model: str, answers: list[Answer], usage_: dict, finishes: list[str]) -> dict:
    return {"id": new_id("cmpl"), "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": [{"index": i, "text": a.text, "finish_reason": f, "logprobs": None}
                        for i, (a, f) in enumerate(zip(answers, finishes))],
            "usage": usage_, "paramdb": paramdb_field(answers[0]) if len(answers) == 1 else
            {"answers": [paramdb_field(a) for a in answers]}}


def chat_chunks(model: str, answer: Answer, usage_: dict, finish: str, include_usage: bool) -> list[dict]:
    """The answer as OpenAI stream chunks: the role, the content in one piece, the finish (with ParamDB's
    hits and notes), and, when asked, a last chunk with usage and no choices."""
    cid, created = new_id("chatcmpl"), int(time.time())

    def chunk(delta: dict, finish_: str | None, **extra) -> dict:
        return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_, "logprobs": None}], **extra}

    chunks = [chunk({"role": "assistant", "content": ""}, None), chunk({"content": answer.text}, None),
              chunk({}, finish, paramdb=paramdb_field(answer))]
    if include_usage:
        chunks.append({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                       "choices": [], "usage": usage_})
    return chunks


def completion_chunks(model: str, answers: list[Answer], usage_: dict, finishes: list[str],
                      include_usage: bool) -> list[dict]:
    cid, created = new_id("cmpl"), int(time.time())
    chunks = []
    for i, (a, f) in enumerate(zip(answers, finishes)):
        base = {"id": cid, "object": "text_completion", "created": created, "model": model}
        chunks.append(base | {"choices": [{"index": i, "text": a.text, "finish_reason": None, "logprobs": None}]})
        chunks.append(base | {"choices": [{"index": i, "text": "", "finish_reason": f, "logprobs": None}],
                              "paramdb": paramdb_field(a)})
    if include_usage:
        chunks.append({"id": cid, "object": "text_completion", "created": created, "model": model, "choices": [],
                       "usage": usage_})
    return chunks
