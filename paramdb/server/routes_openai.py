"""The OpenAI-compatible endpoints: /v1/models, /v1/chat/completions, /v1/completions.

Each answer request becomes answer jobs on the model thread (batching.py), which gathers concurrent ones
into batched generations. The whole answer is computed before a response starts, so even a streamed
request that fails gets a plain HTTP error; a streamed answer is then sent as OpenAI chunks (role, the
content in one piece, the finish) and ``data: [DONE]``.
"""
from __future__ import annotations

import json
from typing import Iterable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from paramdb import validate

from . import jobs, openai_schema as schema
from .limits import read_json
from .state import ServerState


def _sse(chunks: Iterable[dict]) -> StreamingResponse:
    async def events():
        for chunk in chunks:
            yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
        yield "data: [DONE]\n\n"
    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def models(request: Request) -> Response:
    return JSONResponse(schema.models_list())


async def _answers(state: ServerState, questions: list[str], options) -> list:
    for q in questions:
        validate.query_text(q, "question")          # cheap checks here; length is the engine's (tokens)
    futures = []
    try:
        for q in questions:
            futures.append(state.worker.submit_answer(q, options))
    except BaseException:
        for f in futures:
            f.cancel()
        raise
    return await jobs.wait_all(futures, state.settings.timeout_s)


async def chat_completions(request: Request) -> Response:
    state: ServerState = request.app.state.paramdb
    body = await read_json(request, state.settings.max_body_bytes)
    model, question, options = schema.chat_request(body, state.settings)
    stream, include_usage = schema.stream_flags(body)
    [done] = await _answers(state, [question], options)
    usage, finish = schema.usage([done]), schema.finish_reason(done, options.max_new_tokens)
    if stream:
        return _sse(schema.chat_chunks(model, done.answer, usage, finish, include_usage))
    return JSONResponse(schema.chat_response(model, done.answer, usage, finish))


async def completions(request: Request) -> Response:
    state: ServerState = request.app.state.paramdb
    body = await read_json(request, state.settings.max_body_bytes)
    model, questions, options = schema.completion_request(body, state.settings)
    stream, include_usage = schema.stream_flags(body)
    done = await _answers(state, questions, options)
    usage, finishes = schema.usage(done), [schema.finish_reason(d, options.max_new_tokens) for d in done]
    answers = [d.answer for d in done]
    if stream:
        return _sse(schema.completion_chunks(model, answers, usage, finishes, include_usage))
    return JSONResponse(schema.completion_response(model, answers, usage, finishes))
