"""Background training of deferred rows: a child ``paramdb refine STORE --watch`` beside the server.

``POST /documents`` stores rows with ``parameterize="later"`` (embedding only, answered from their passage
until trained) where this ParamDB has it. Training them in the server's own process would stop every read
for as long as a batch trains: the model thread is the only one allowed to run the model (batching.py). A
separate process has its own copy of the model, so answers never wait for training; it takes the store's
writer lock only to commit each batch, and the server's indexes and adapter reads follow its commits (the
metadata generation moves, and each refined row gets a new blob key).

On shutdown the child is asked to stop with SIGTERM (it finishes and commits the batch in training), after
``grace`` seconds with a second SIGTERM (it abandons that batch: nothing of it is written), and killed if it
is still there; a kill is safe too (refine is resumable and crash-safe, ops/refine.py).
"""
from __future__ import annotations

import logging
import signal
import subprocess
import sys
from pathlib import Path

log = logging.getLogger("paramdb.server")


def deferral_available() -> bool:
    """Whether this ParamDB stores rows for later training (checked at run time, not assumed)."""
    from paramdb.db import PARAMETERIZE
    return "later" in PARAMETERIZE


def insert_mode() -> str:
    return "later" if deferral_available() else "train"


class Refiner:
    """The child process; ``start`` and ``stop`` are idempotent."""

    def __init__(self, store: str | Path, *, device: str | None = None, interval: float = 2.0, grace: float = 20.0):
        self.command = [sys.executable, "-c", "from paramdb.cli import main; main(prog_name='paramdb')",
                        "refine", str(store), "--watch", "--interval", str(interval),
                        *(["--device", device] if device else [])]
        self.grace = grace
        self.process: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        # its own session: Ctrl-C in the terminal reaches the server only, which then stops the child in order
        # its output is the server's log (stderr), never the server's stdout
        self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=sys.stderr,
                                        start_new_session=True)
        log.info("background refine started (pid %d): %s", self.process.pid, " ".join(self.command))

    def stop(self) -> int | None:
        """Stop the child; returns its exit status (None if it never started)."""
        if self.process is None:
            return None
        for _ in range(2):
            if self.process.poll() is not None:
                break
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(self.grace)
            except subprocess.TimeoutExpired:
                continue
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        return self.process.returncode

    def info(self) -> dict:
        return {"running": self.running, "pid": self.process.pid if self.process else None}
