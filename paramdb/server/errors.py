"""The one place where errors become HTTP responses: a status and a one-line JSON message.

The body is OpenAI's error shape, ``{"error": {"message", "type", "code"}}``, so the ``openai`` client raises
its own typed exception (BadRequestError, NotFoundError, RateLimitError, ...) with our message. A
ParamDBError is the caller's to fix and maps by class below; the server's own refusals (queue full, timeout,
bad key, body too large) are ``HTTPError``; anything else is a bug: 500 with the exception's type, its
traceback in the server log and never in the response.
"""
from __future__ import annotations

import logging

from starlette.responses import JSONResponse

from paramdb.errors import (CorruptData, DiskFull, DuplicateId, FormatError, InvalidInput, MetadataUnavailable,
                            MissingDependency, ModelLoadError, ModelMismatch, NoTranslator, ParamDBError,
                            ReadOnlyStore, StoreLocked, StoreNotFound, UnknownId)

log = logging.getLogger("paramdb.server")

# Most specific first: DuplicateId is an InvalidInput, so it must be looked up before it.
STATUS: list[tuple[type[ParamDBError], int, str]] = [
    (DuplicateId, 409, "duplicate_id"),
    (InvalidInput, 400, "invalid_input"),
    (UnknownId, 404, "unknown_id"),
    (ReadOnlyStore, 403, "read_only_store"),
    (StoreLocked, 503, "store_locked"),
    (DiskFull, 507, "disk_full"),
    (NoTranslator, 409, "no_translator"),
    (ModelMismatch, 409, "model_mismatch"),
    (MissingDependency, 501, "missing_dependency"),
    (CorruptData, 500, "corrupt_data"),
    (FormatError, 500, "format_error"),
    (StoreNotFound, 500, "store_not_found"),
    (ModelLoadError, 500, "model_load_error"),
    (MetadataUnavailable, 503, "metadata_unavailable"),
]


class HTTPError(Exception):
    """A refusal by the server itself, with its status and OpenAI error ``type``/``code``."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.status, self.type, self.code = status, type_, code


def one_line(text: object) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def classify(exc: BaseException) -> tuple[int, str, str, str | None]:
    """(status, message, type, code) for any exception; logs the traceback of the unexpected ones."""
    if isinstance(exc, HTTPError):
        return exc.status, one_line(exc), exc.type, exc.code
    if isinstance(exc, ParamDBError):
        for cls, status, code in STATUS:
            if isinstance(exc, cls):
                kind = "invalid_request_error" if status < 500 else "server_error"
                return status, one_line(exc) or type(exc).__name__, kind, code
        return 500, one_line(exc) or type(exc).__name__, "server_error", "paramdb_error"
    log.error("internal error answering a request", exc_info=exc)
    return 500, f"internal error: {type(exc).__name__} (see the server log)", "server_error", "internal_error"


def error_response(exc: BaseException, headers: dict[str, str] | None = None) -> JSONResponse:
    status, message, kind, code = classify(exc)
    return JSONResponse({"error": {"message": message, "type": kind, "code": code}}, status_code=status,
                        headers=headers)
