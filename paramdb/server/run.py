"""Running the app on uvicorn: in the foreground for ``paramdb serve``, or on a thread for tests and tools.

uvicorn handles SIGINT and SIGTERM itself in the foreground: it stops accepting, lets requests in flight
finish (up to ``GRACE`` seconds), then runs the app's shutdown (the model thread stops, the background
refine is stopped in order: app.py, refiner.py).
"""
from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import uvicorn

from paramdb.errors import InvalidInput

from .settings import ServerSettings

GRACE = 30


def _config(app, settings: ServerSettings, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(app, host=settings.host, port=settings.port, log_level=log_level, lifespan="on",
                          timeout_graceful_shutdown=GRACE, server_header=False)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the model loads, so a taken port is one line at once, not after
    a minute of loading."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


class _Server(uvicorn.Server):
    """uvicorn re-raises the signal that stopped it once it has shut down, so SIGTERM would then kill the
    process (status -15) before the store is closed, and Ctrl-C surface as KeyboardInterrupt. A signal here
    means "stop cleanly", which the shutdown has done: forget it, return, and let the caller close the store
    and exit 0."""

    @contextmanager
    def capture_signals(self):
        with super().capture_signals():
            yield
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list):
                captured.clear()


def serve_forever(app, settings: ServerSettings, sock: socket.socket, log_level: str = "info") -> None:
    """Serve on ``sock`` until SIGINT/SIGTERM, then shut down cleanly and return."""
    server = _Server(_config(app, settings, log_level))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    if not server.started:
        raise SystemExit(1)


@contextmanager
def serve_in_thread(app, host: str = "127.0.0.1", log_level: str = "warning",
                    start_timeout: float = 600.0) -> Iterator[str]:
    """Serve ``app`` on a free port of ``host`` from a thread; yields the base URL; stops it on exit."""
    sock = bind(host, 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(_config(app, ServerSettings(host=host, port=port), log_level))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(GRACE + 30)
        sock.close()
