"""Writing an export folder: atomically, under names any file system takes, never over work unasked."""
from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path

from ..errors import InvalidInput

_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
MAX_NAME = 200      # below every common file system's 255-byte name limit, with room for a hash suffix


def folder_name(doc_id: str) -> str:
    """A folder name for ``doc_id``: letters, digits, _ and - as they are, every other byte as %XX (so '.',
    '/', '%' and non-ASCII ids all work and two ids never share a name); a name that would be too long
    keeps its start and ends in a hash of the whole id."""
    name = "".join(c if c in _SAFE else "".join(f"%{b:02X}" for b in c.encode()) for c in doc_id)
    if len(name) > MAX_NAME:
        name = name[:MAX_NAME - 17] + "~" + hashlib.sha256(doc_id.encode()).hexdigest()[:16]
    return name


def check_target(target: Path, force: bool) -> None:
    """Refuse, before any work, a target that is a file, a non-empty folder (unless ``force``) or has no
    writable parent folder."""
    if target.exists() and not target.is_dir():
        raise InvalidInput(f"{target}: exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise InvalidInput(f"{target}: folder exists and is not empty (pass --force / force=True to replace it)")
    parent = target.parent
    if not parent.is_dir():
        raise InvalidInput(f"{target}: parent folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InvalidInput(f"{target}: cannot write in {parent} (permission denied)")


def write_tree(target: Path, files: dict[str, bytes], force: bool = False) -> Path:
    """Write ``files`` (relative path -> bytes) as the folder ``target``, all or nothing: they are written
    and synced in a hidden folder beside it, which then takes its place in one rename. An existing folder
    is replaced only with ``force`` (it is moved aside first and removed once the new one is in place)."""
    target = Path(target)
    check_target(target, force)
    staging = target.parent / f".{target.name}.export-{uuid.uuid4().hex[:8]}"
    old = None
    try:
        staging.mkdir()
        for rel, data in files.items():
            path = staging / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        if target.exists():
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(target, old)
        os.rename(staging, target)
    except OSError as exc:
        if old is not None and not target.exists():
            os.rename(old, target)                       # put the previous folder back
            old = None
        raise InvalidInput(f"{target}: cannot write the export: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return target
