"""``paramdb serve``: the store behind an OpenAI-compatible HTTP server (paramdb/server, docs/server.md)."""
from __future__ import annotations

import click

from paramdb.errors import MissingDependency

from . import commands
from .options import device_option, store_argument


def _server():
    """paramdb.server needs the `serve` extra; without it, say which pip command adds it."""
    try:
        import paramdb.server as server
    except ImportError as exc:
        raise MissingDependency(f"paramdb serve needs {exc.name or 'uvicorn and starlette'}: "
                                "pip install 'paramdb[serve]'") from None
    return server


@click.command()
@store_argument
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; any but loopback needs an API key.")
@click.option("--port", type=click.IntRange(min=0, max=65535), default=8000, show_default=True)
@click.option("--api-key", default=None, metavar="KEY",
              help="Require `Authorization: Bearer KEY` [env: PARAMDB_API_KEY]; needed off loopback.")
@click.option("--batch-window-ms", type=click.FloatRange(min=0), default=5.0, show_default=True, metavar="MS",
              help="How long the first answer request of a batch waits for others.")
@click.option("--max-batch", type=click.IntRange(min=1), default=16, show_default=True,
              help="Questions answered by one batched generation.")
@click.option("--max-queue", type=click.IntRange(min=1), default=64, show_default=True,
              help="Requests waiting for the model; beyond it, 429.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=120.0, show_default=True,
              metavar="S", help="Per-request timeout in seconds (504 after it).")
@click.option("--max-body-bytes", type=click.IntRange(min=1), default=1 << 20, show_default=True)
@click.option("--cors-origin", "cors_origins", multiple=True, metavar="ORIGIN",
              help="Allow browsers from ORIGIN (repeatable); none by default.")
@click.option("--refine/--no-refine", default=None,
              help="Train deferred rows in a background `paramdb refine --watch` process [default: on where "
                   "inserts are deferred].")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@device_option
def serve(store, host, port, api_key, batch_window_ms, max_batch, max_queue, timeout, max_body_bytes,
          cors_origins, refine, log_level, device):
    """Serve STORE over HTTP: OpenAI-compatible /v1/chat/completions, /v1/completions and /v1/models (one
    model per mode: paramdb-prag, -icl, -combine, -closed), plus /documents, /query, /stats and /health.
    Concurrent questions are answered together in batched generations. Stops cleanly on Ctrl-C or SIGTERM.

    \b
    Examples:
      paramdb serve mystore
      paramdb serve mystore --host 0.0.0.0 --port 8080 --api-key s3cret
      paramdb serve mystore --batch-window-ms 10 --max-batch 32 --no-refine
    """
    server = _server()
    settings = server.ServerSettings(
        host=host, port=port, api_key=server.settings.api_key_from_env(api_key), batch_window_ms=batch_window_ms,
        max_batch=max_batch, max_queue=max_queue, timeout_s=timeout, max_body_bytes=max_body_bytes,
        cors_origins=tuple(cors_origins)).check()          # before the model loads: refuse an exposed bind
    deferred = server.refiner.deferral_available()
    if refine and not deferred:
        raise click.UsageError("--refine needs deferred inserts, which this ParamDB lacks")
    sock = server.run.bind(host, port)      # before the model loads: a taken port is refused at once
    try:
        with commands.open_db(store, device=device) as db:
            background = server.Refiner(db.path, device=device) if (deferred if refine is None else refine) \
                and not db.readonly else None
            app = server.build_app(db, settings, refiner=background)
            click.echo(f"serving {db.path} on http://{host}:{sock.getsockname()[1]} (Ctrl-C to stop)", err=True)
            server.serve_forever(app, settings, sock, log_level=log_level)
    finally:
        sock.close()
