"""Everything the CLI prints for a person goes through here, so stored data cannot drive the terminal.

Ids, texts, metadata and model output are the user's (or an attacker's) bytes: an ESC or OSC sequence in a
document would clear the screen, retitle the window or forge a line when `ls` or `get` shows it. Human output
therefore shows every control character as a visible escape (``\\x1b``, ``\\n``), the way Python's repr
does; ``--json`` output is left exact (JSON escapes C0 characters itself). Body text keeps its newlines and
tabs; an id escapes those too, and its backslashes, so one id is one unambiguous line of ``ls``.
"""
from __future__ import annotations

import re

import click

# C0 and C1 controls, DEL, line/paragraph separators, and the bidirectional overrides and isolates that can
# make text read in another order than it is stored.
_CONTROL = "\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_UNSAFE_BODY = re.compile(f"[{_CONTROL}]")
_UNSAFE_LINE = re.compile(f"[{_CONTROL}\t\n]")
_UNSAFE_ID = re.compile(f"[{_CONTROL}\t\n\\\\]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def _escape(match: re.Match) -> str:
    ch = match.group()
    if ch in _NAMED:
        return _NAMED[ch]
    return f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"


def terminal_safe(text: object, *, multiline: bool = False) -> str:
    """``text`` with control characters shown as escapes; ``multiline`` keeps newlines and tabs."""
    return (_UNSAFE_BODY if multiline else _UNSAFE_LINE).sub(_escape, str(text))


def shown_id(doc_id: str) -> str:
    """An id as one unambiguous token: controls, newlines, tabs and backslashes escaped."""
    return _UNSAFE_ID.sub(_escape, doc_id)


def say(text: object = "", *, err: bool = False, multiline: bool = False) -> None:
    """Print one piece of human-readable output (a line unless ``multiline``), terminal-safe."""
    click.echo(terminal_safe(text, multiline=multiline), err=err)
