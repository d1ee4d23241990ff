"""ParamDB's own endpoints over the same API: documents, query, stats, health.

Everything that touches the store runs on the model thread (batching.py), the one thread that may use the
model, the embedder and the store handle; only /health answers from the event loop, so a liveness probe
never waits behind a batch. ``POST /documents`` defers parameterization where this ParamDB can
(``parameterize="later"``: stored at embedding speed, answered from the passage until the background refine
trains it, refiner.py) and otherwise trains before it returns.
"""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import jobs
from .errors import HTTPError
from .limits import read_json
from .openai_schema import bad
from .state import ServerState


def doc_json(doc) -> dict:
    return {"id": doc.id, "text": doc.text, "metadata": doc.metadata, "adapter": doc.adapter_kind}


def hit_json(hit) -> dict:
    return {"id": hit.id, "score": hit.score, "text": hit.text, "metadata": hit.metadata,
            "adapter": hit.adapter_kind}


def _state(request: Request) -> ServerState:
    return request.app.state.paramdb


async def insert(request: Request) -> Response:
    """Body: a JSON list of documents (strings or {"text", "id"?, "metadata"?}), or {"documents": [...],
    "upsert": bool}. Returns the ids stored (in commit order) and those already stored (skipped)."""
    state = _state(request)
    body = await read_json(request, state.settings.max_body_bytes)
    upsert = False
    if isinstance(body, dict):
        upsert = body.get("upsert", False)
        if not isinstance(upsert, bool):
            raise bad(f"'upsert' must be true or false, got {upsert!r}")
        body = body.get("documents")
    if not isinstance(body, list) or not body:
        raise bad('expected a non-empty JSON list of documents, or {"documents": [...]}')
    if len(body) > state.settings.max_documents:
        raise bad(f"{len(body)} documents in one request; at most {state.settings.max_documents}")
    mode, db = state.insert_mode, state.db
    report = await jobs.wait(state.worker.submit(lambda: db.insert(body, upsert=upsert, parameterize=mode)),
                             state.settings.timeout_s, write=True)
    return JSONResponse({"ids": list(report.ids), "skipped": list(report.skipped),
                         "adapter": "pending" if mode == "later" else "trained"})


async def get_document(request: Request) -> Response:
    state, doc_id = _state(request), request.path_params["doc_id"]
    db = state.db
    doc = await jobs.wait(state.worker.submit(lambda: db.get(doc_id)), state.settings.timeout_s)
    return JSONResponse(doc_json(doc))


async def delete_document(request: Request) -> Response:
    state, doc_id = _state(request), request.path_params["doc_id"]
    db = state.db
    n = await jobs.wait(state.worker.submit(lambda: db.delete(doc_id)), state.settings.timeout_s, write=True)
    return JSONResponse({"deleted": n})


async def query(request: Request) -> Response:
    """Body: {"text", "k"?, "where"?, "method"?} -> {"hits": [...]}, best first."""
    state = _state(request)
    body = await read_json(request, state.settings.max_body_bytes)
    if not isinstance(body, dict):
        raise bad(f"the request body must be a JSON object, got {type(body).__name__}")
    text = body.get("text", body.get("query"))
    k = body.get("k", 3)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= state.settings.max_k:
        raise bad(f"'k' must be an integer between 1 and {state.settings.max_k}, got {k!r}")
    where, method = body.get("where"), body.get("method", "hybrid")
    if where is not None and not isinstance(where, dict):
        raise bad(f"'where' must be a JSON object (a metadata filter), got {type(where).__name__}")
    db = state.db
    hits = await jobs.wait(state.worker.submit(lambda: db.query(text, k=k, where=where, method=method)),
                           state.settings.timeout_s)
    return JSONResponse({"hits": [hit_json(h) for h in hits]})


async def stats(request: Request) -> Response:
    state = _state(request)
    db = state.db
    info = await jobs.wait(state.worker.submit(db.stats), state.settings.timeout_s)
    return JSONResponse(info | {"server": state.worker.stats() | {
        "insert_mode": state.insert_mode, "refine": state.refiner.info() if state.refiner else None}})


async def health(request: Request) -> Response:
    state = _state(request)
    if not state.worker.alive:
        raise HTTPError(503, "the model thread is not running", "server_error", "unavailable")
    return JSONResponse({"status": "ok"})
