"""Awaiting the model thread from the event loop, with the per-request timeout.

A read that times out is abandoned (cancelled if still queued, its result dropped if already running): 504.
A write is different: once the model thread has started it, it will commit whatever the client does, so a
504 then would lie. A write times out only while it is still queued (cancelled: nothing written, 504);
once started, the request waits for its commit and reports it.
"""
from __future__ import annotations

import asyncio
from concurrent.futures import Future
from typing import Any

from .errors import HTTPError


def timed_out(timeout: float, written: bool) -> HTTPError:
    tail = "; nothing was written" if written else ""
    return HTTPError(504, f"no answer within the server's {timeout:g} s request timeout{tail}", "server_error",
                     "timeout")


async def wait(future: Future, timeout: float, *, write: bool = False) -> Any:
    wrapped = asyncio.wrap_future(future)
    done, _ = await asyncio.wait({wrapped}, timeout=timeout)
    if done:
        return wrapped.result()
    if future.cancel():                     # still queued: the model thread will skip it
        raise timed_out(timeout, write)
    if write:
        return await wrapped                # running: it commits regardless, so report what it did
    wrapped.cancel()
    raise timed_out(timeout, False)


async def wait_all(futures: list[Future], timeout: float) -> list[Any]:
    """Several answer jobs of one request (a completion's prompts), under one deadline."""
    wrapped = [asyncio.wrap_future(f) for f in futures]
    done, pending = await asyncio.wait(set(wrapped), timeout=timeout)
    if pending:
        for f in futures:
            f.cancel()
        for w in wrapped:
            w.cancel()
        raise timed_out(timeout, False)
    return [w.result() for w in wrapped]
