"""Backup archives: a plain tar of a fixed set of members plus a manifest of their sha256 sums.

Reading never uses ``tarfile.extract``: each member is checked (a regular file, a name from the fixed set,
no absolute path, no ``..``, no link) and streamed to its place while its digest is computed, so an archive
cannot write outside the target folder. Every byte of the file is covered by a check: tar header checksums,
the members' sha256 in the manifest, the manifest's own sha256 in ``manifest.sha256``, and zero padding
between and after members. So one flipped byte anywhere is caught before anything from it is used.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import uuid
from pathlib import Path, PurePosixPath

from paramdb.errors import CorruptData, InvalidInput

MANIFEST = "manifest.json"
MANIFEST_SUM = "manifest.sha256"
MARKER = "paramdb.json"
META = "meta.sqlite"
BLOBS = "blobs.lmdb/data.mdb"
MEMBERS = (MARKER, META, BLOBS)
ARCHIVE_VERSION = 1
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def write(archive: Path, files: dict[str, Path], manifest: dict) -> dict:
    """Write ``files`` (member name -> local file) and a manifest naming their sums; atomic and 0600.

    The archive appears under its name only once complete and on disk, so a backup killed half way
    leaves at most a hidden ``.name.partial-*`` file, never a truncated archive under the real name.
    """
    manifest = dict(manifest, archive_version=ARCHIVE_VERSION,
                    members={name: {"sha256": sha256_file(p), "size": p.stat().st_size}
                             for name, p in files.items()})
    archive = Path(archive)
    tmp = archive.with_name(f".{archive.name}.partial-{uuid.uuid4().hex[:8]}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
            body = json.dumps(manifest, indent=1, sort_keys=True).encode()
            for name, data in ((MANIFEST, body), (MANIFEST_SUM, hashlib.sha256(body).hexdigest().encode())):
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o600
                tar.addfile(info, io.BytesIO(data))
            for name, path in files.items():
                info = tarfile.TarInfo(name)
                info.size, info.mode = path.stat().st_size, 0o600
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            tar.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, archive)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return manifest


def _safe_name(member: tarfile.TarInfo, archive: Path) -> str:
    name = member.name
    parts = PurePosixPath(name).parts
    if name.startswith("/") or PurePosixPath(name).is_absolute() or ".." in parts:
        raise InvalidInput(f"{archive}: member {name!r} points outside the store; refusing the archive")
    if member.issym() or member.islnk():
        raise InvalidInput(f"{archive}: member {name!r} is a link ({member.linkname!r}); refusing the archive")
    if not member.isfile():
        raise InvalidInput(f"{archive}: member {name!r} is not a regular file; refusing the archive")
    if name not in (MANIFEST, MANIFEST_SUM, *MEMBERS):
        raise InvalidInput(f"{archive}: unexpected member {name!r}; refusing the archive")
    return name


def extract(archive: Path, dest: Path) -> dict:
    """Stream every member into ``dest`` (an empty folder), checking names and sums; returns the manifest.

    Raises InvalidInput for an unsafe or malformed archive and CorruptData for a checksum mismatch;
    either way the caller discards ``dest``.
    """
    archive = Path(archive)
    digests: dict[str, str] = {}
    small: dict[str, bytes] = {}
    spans: list[tuple[int, int]] = []
    try:
        with tarfile.open(archive, mode="r:") as tar:
            for member in tar:
                name = _safe_name(member, archive)
                if name in digests or name in small:
                    raise InvalidInput(f"{archive}: member {name!r} appears twice; refusing the archive")
                spans.append((member.offset_data, member.size))
                src = tar.extractfile(member)
                if name in (MANIFEST, MANIFEST_SUM):
                    small[name] = src.read(1 << 24)
                    continue
                target = dest / name
                target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                h = hashlib.sha256()
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    while chunk := src.read(_CHUNK):
                        h.update(chunk)
                        out.write(chunk)
                digests[name] = h.hexdigest()
    except (tarfile.TarError, EOFError) as exc:
        raise CorruptData(f"{archive}: not a readable ParamDB archive ({exc})".splitlines()[0]) from None
    body = small.get(MANIFEST)
    if body is None or small.get(MANIFEST_SUM, b"").decode("ascii", "replace") != hashlib.sha256(body).hexdigest():
        raise CorruptData(f"{archive}: manifest missing or failing its sha256 check (archive damaged)")
    try:
        manifest = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        manifest = None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("members"), dict):
        raise CorruptData(f"{archive}: manifest is not a ParamDB manifest")
    _check_padding(archive, spans)
    if manifest.get("archive_version") != ARCHIVE_VERSION:
        raise InvalidInput(f"{archive}: archive version {manifest.get('archive_version')!r}; this ParamDB "
                           f"reads version {ARCHIVE_VERSION}")
    for name in MEMBERS:
        want = manifest["members"].get(name, {}).get("sha256")
        if name not in digests or want is None:
            raise CorruptData(f"{archive}: member {name!r} is missing")
        if digests[name] != want:
            raise CorruptData(f"{archive}: member {name!r} fails its sha256 check (archive damaged)")
    return manifest


def _check_padding(archive: Path, spans: list[tuple[int, int]]) -> None:
    """Bytes no header or digest covers (block padding, the end-of-archive blocks) must be zero."""
    with open(archive, "rb") as f:
        ends = sorted(off + size for off, size in spans)
        gaps = [(end, -end % 512) for end in ends]
        last = max(ends, default=0) + (-max(ends, default=0) % 512)
        f.seek(0, os.SEEK_END)
        gaps.append((last, f.tell() - last))
        for start, length in gaps:
            f.seek(start)
            if f.read(length).strip(b"\0"):
                raise CorruptData(f"{archive}: damaged bytes at offset {start} (archive padding is not zero)")
