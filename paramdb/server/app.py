"""The Starlette application: routes, middleware, and the start-up and shutdown of the model thread.

Starlette rather than FastAPI: every body is checked by ParamDB's own validators (one-line messages in
OpenAI's error shape, errors.py), so FastAPI's pydantic models would be a second, differently worded set of
checks plus a dependency tree; Starlette is the part of FastAPI this server uses. ``build_app`` takes an
already open ParamDB (tests inject a tiny model that way; ``paramdb serve`` opens it from a path).
"""
from __future__ import annotations

import asyncio
import functools
from contextlib import asynccontextmanager
from typing import Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import jobs, routes_native as native, routes_openai as oai
from .batching import ModelWorker
from .errors import HTTPError, error_response
from .limits import BearerAuth
from .refiner import Refiner, insert_mode
from .settings import ServerSettings
from .state import ServerState

LOAD_TIMEOUT = 1800.0      # seconds the model may take to load at start-up


def _guarded(endpoint: Callable[[Request], Awaitable[Response]]):
    """Any exception of a route becomes its HTTP error (errors.py), never a traceback in the response."""
    @functools.wraps(endpoint)
    async def run(request: Request) -> Response:
        try:
            return await endpoint(request)
        except Exception as exc:
            return error_response(exc)
    return run


async def _http_exception(request: Request, exc: HTTPException) -> Response:
    """Starlette's own refusals (no such path, wrong method) in the same one-line JSON shape."""
    message = {404: f"no such endpoint: {request.method} {request.url.path}",
               405: f"method {request.method} not allowed on {request.url.path}"}.get(exc.status_code, exc.detail)
    return error_response(HTTPError(exc.status_code, message, "invalid_request_error",
                                    {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)),
                          headers=getattr(exc, "headers", None))


def build_app(db, settings: ServerSettings | None = None, *, refiner: Refiner | None = None) -> Starlette:
    """An ASGI app serving ``db``. The model thread starts (and the model is loaded, once) in the app's
    lifespan start-up, with the background ``refiner`` if given; both stop at shutdown."""
    settings = (settings or ServerSettings()).check()
    worker = ModelWorker(db, window_s=settings.batch_window_ms / 1000, max_batch=settings.max_batch,
                         max_queue=settings.max_queue)
    state = ServerState(db=db, settings=settings, worker=worker, refiner=refiner, insert_mode=insert_mode())

    @asynccontextmanager
    async def lifespan(app: Starlette):
        worker.start()
        models = db.handle.models
        await jobs.wait(worker.submit(lambda: (models.lm.tokenizer, models.embedder)), LOAD_TIMEOUT)
        if refiner is not None:
            refiner.start()
        try:
            yield
        finally:
            if refiner is not None:
                await asyncio.to_thread(refiner.stop)
            await asyncio.to_thread(worker.stop)

    routes = [
        Route("/v1/models", _guarded(oai.models), methods=["GET"]),
        Route("/v1/chat/completions", _guarded(oai.chat_completions), methods=["POST"]),
        Route("/v1/completions", _guarded(oai.completions), methods=["POST"]),
        Route("/documents", _guarded(native.insert), methods=["POST"]),
        Route("/documents/{doc_id:path}", _guarded(native.get_document), methods=["GET"]),
        Route("/documents/{doc_id:path}", _guarded(native.delete_document), methods=["DELETE"]),
        Route("/query", _guarded(native.query), methods=["POST"]),
        Route("/stats", _guarded(native.stats), methods=["GET"]),
        Route("/health", _guarded(native.health), methods=["GET"]),
    ]
    middleware = []
    if settings.cors_origins:            # none unless asked: browsers on other origins are refused
        middleware.append(Middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                                     allow_methods=["GET", "POST", "DELETE"],
                                     allow_headers=["Authorization", "Content-Type"]))
    if settings.api_key:
        middleware.append(Middleware(BearerAuth, api_key=settings.api_key))
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan,
                    exception_handlers={HTTPException: _http_exception})
    app.state.paramdb = state
    return app
