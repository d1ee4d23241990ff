"""What a server is allowed to do, fixed when it starts: where it listens, who may ask, and how much.

Every bound lives here so the routes, the batcher and the CLI read one value. The one rule that is checked
before anything listens: a server reachable from other machines (any host that is not loopback) must have
an API key, so that the store is never exposed by mistake.
"""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

from paramdb.errors import InvalidInput

API_KEY_ENV = "PARAMDB_API_KEY"


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    batch_window_ms: float = 5.0      # how long the first answer request of a batch waits for company
    max_batch: int = 16               # questions answered by one generate_batch call
    max_queue: int = 64               # jobs waiting for the model; one more is refused with 429
    timeout_s: float = 120.0          # per request, waiting included; then 504
    max_body_bytes: int = 1 << 20     # 413 beyond this
    max_k: int = 20                   # documents a question may retrieve
    max_tokens: int = 256             # most new tokens a request may ask for
    max_documents: int = 256          # documents one POST /documents may carry
    cors_origins: tuple[str, ...] = field(default_factory=tuple)

    def check(self) -> "ServerSettings":
        """Refuse settings that cannot work or would expose the store; returns self."""
        if self.batch_window_ms < 0:
            raise InvalidInput(f"--batch-window-ms must be 0 or more, got {self.batch_window_ms}")
        for name in ("max_batch", "max_queue", "max_body_bytes", "max_k", "max_tokens", "max_documents"):
            if getattr(self, name) < 1:
                raise InvalidInput(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.timeout_s <= 0:
            raise InvalidInput(f"--timeout must be more than 0 seconds, got {self.timeout_s}")
        if self.api_key is not None and not self.api_key.strip():
            raise InvalidInput("the API key is empty: give a non-empty --api-key or unset it")
        if not is_loopback(self.host) and not self.api_key:
            raise InvalidInput(f"refusing to listen on {self.host}, which other machines can reach, without an "
                               f"API key: give --api-key KEY or set {API_KEY_ENV} (or bind 127.0.0.1)")
        return self


def is_loopback(host: str) -> bool:
    """True for addresses only this machine reaches (127.0.0.0/8, ::1, localhost); "0.0.0.0" and every
    other name count as reachable from outside."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def api_key_from_env(given: str | None) -> str | None:
    """``--api-key`` wins; else the environment variable; an empty variable counts as unset."""
    return given if given is not None else (os.environ.get(API_KEY_ENV) or None)
