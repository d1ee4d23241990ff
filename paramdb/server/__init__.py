"""``paramdb serve``: an OpenAI-compatible HTTP server over the ParamDB API, batching requests together.

A client of the ParamDB façade like the CLI: app.py (routes and lifecycle), batching.py (the one model
thread and cross-request batching), openai_schema.py (OpenAI shapes), routes_native.py, limits.py (auth,
body size), errors.py (errors to HTTP statuses, in one place), refiner.py (background training of deferred
rows), run.py (uvicorn). Details and figures: docs/server.md.
"""
from __future__ import annotations

from .app import build_app
from .refiner import Refiner
from .run import serve_forever, serve_in_thread
from .settings import API_KEY_ENV, ServerSettings

__all__ = ["build_app", "Refiner", "ServerSettings", "API_KEY_ENV", "serve_forever", "serve_in_thread"]
