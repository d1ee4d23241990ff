"""Who may ask and how much they may send: Bearer auth and the request body's size.

Auth is ASGI middleware, so it guards every path (unknown ones included) before any route reads a byte;
``/health`` stays open for liveness probes and says nothing about the store. The key is compared in
constant time. The body is read with a running count, so a client that lies in (or omits) Content-Length
still cannot make the server hold more than ``max_body_bytes``.
"""
from __future__ import annotations

import hmac
import json
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import HTTPError, error_response

OPEN_PATHS = frozenset({"/health"})


class BearerAuth:
    """Refuses (401, OpenAI's ``invalid_api_key``) any request without ``Authorization: Bearer <key>``."""

    def __init__(self, app: ASGIApp, api_key: str):
        self.app, self._key = app, api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = given.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self._key):
            what = "no API key given" if not given else "wrong API key"
            response = error_response(HTTPError(401, f"{what}: send Authorization: Bearer <key>",
                                                "invalid_request_error", "invalid_api_key"),
                                      headers={"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def read_json(request: Request, max_bytes: int) -> Any:
    """The body as JSON, refusing one over ``max_bytes`` (413) or one that is not JSON (400)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_large(max_bytes)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise too_large(max_bytes)
    if not body.strip():
        raise HTTPError(400, "the request body is empty: expected JSON")
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise HTTPError(400, "the request body is not UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise HTTPError(400, f"the request body is not valid JSON: {exc}") from None


def too_large(max_bytes: int) -> HTTPError:
    return HTTPError(413, f"the request body is larger than {max_bytes} bytes, the most this server takes",
                     "invalid_request_error", "body_too_large")


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")
