"""``FsArtifactStore``: bundles stored once per content digest under a root folder.

Layout: ``root/sha256/<hex[:2]>/<hex>.bundle``. A file appears only complete (temp
file in the same folder, fsync, atomic rename, fsync of the folder), so a crash
leaves either nothing or the whole bundle; identical uploads share one file. The
content is checked against its digest on every read, so a damaged file is reported
instead of running code nobody deployed.

File format (deterministic, so one content always gives one file)::

    MAGIC, u32 count, then per file sorted by path:
    u32 path length, UTF-8 path, u64 content length, content
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import struct
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path

from compute_worker.adapters.bundles import bundle_digest
from compute_worker.domain import errors
from compute_worker.domain.ports.bundles import ArtifactStore

MAGIC = b"CWBUNDLE1\n"
_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


class FsArtifactStore(ArtifactStore):
    def __init__(self, root: Path) -> None:
        self._root = Path(root)

    async def put(self, files: Mapping[str, bytes]) -> str:
        return await asyncio.to_thread(self._put, dict(files))

    async def get(self, digest: str) -> dict[str, bytes]:
        path = self._path(digest)  # validated before any filesystem access
        return await asyncio.to_thread(self._get, digest, path)

    async def check(self) -> None:
        await asyncio.to_thread(self._check)

    def _path(self, digest: str) -> Path:
        match = _DIGEST.fullmatch(digest) if isinstance(digest, str) else None
        if match is None:
            raise errors.NotFound(f"no artifact has the digest {str(digest)[:80]!r}")
        hex_digest = match.group(1)
        return self._root / "sha256" / hex_digest[:2] / f"{hex_digest}.bundle"

    def _put(self, files: dict[str, bytes]) -> str:
        digest = bundle_digest(files)
        target = self._path(digest)
        if target.exists():
            return digest  # same digest, same content: nothing to do
        try:
            _make_dirs(target.parent)
            _write_atomically(target, encode_bundle(files))
        except OSError as exc:
            raise errors.StorageUnavailable(f"the artifact store cannot write: {exc}") from exc
        return digest

    def _get(self, digest: str, path: Path) -> dict[str, bytes]:
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise errors.NotFound(f"no artifact has the digest {digest}") from exc
        except OSError as exc:
            raise errors.StorageUnavailable(f"the artifact store cannot read: {exc}") from exc
        try:
            files = decode_bundle(data)
        except ValueError as exc:
            raise _corrupt(digest, str(exc)) from exc
        if bundle_digest(files) != digest:
            raise _corrupt(digest, "its content does not match its digest")
        return files

    def _check(self) -> None:
        probe = self._root / f".probe-{uuid.uuid4().hex}"
        try:
            self._root.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise errors.StorageUnavailable(
                f"the artifact store at {self._root} is not writable: {exc}"
            ) from exc


def encode_bundle(files: Mapping[str, bytes]) -> bytes:
    parts = [MAGIC, _U32.pack(len(files))]
    for path in sorted(files):
        encoded = path.encode("utf-8")
        content = files[path]
        parts += [_U32.pack(len(encoded)), encoded, _U64.pack(len(content)), content]
    return b"".join(parts)


def decode_bundle(data: bytes) -> dict[str, bytes]:
    """The inverse of ``encode_bundle``; ``ValueError`` on anything malformed."""
    if not data.startswith(MAGIC):
        raise ValueError("unknown file format")
    view = memoryview(data)
    offset = len(MAGIC)
    (count,) = _unpack(_U32, view, offset)
    offset += _U32.size
    files: dict[str, bytes] = {}
    for _ in range(count):
        (path_length,) = _unpack(_U32, view, offset)
        offset += _U32.size
        path = bytes(_slice(view, offset, path_length)).decode("utf-8")
        offset += path_length
        (content_length,) = _unpack(_U64, view, offset)
        offset += _U64.size
        files[path] = bytes(_slice(view, offset, content_length))
        offset += content_length
    if offset != len(data):
        raise ValueError("trailing bytes after the last file")
    return files


def _unpack(layout: struct.Struct, view: memoryview, offset: int) -> tuple[int, ...]:
    return layout.unpack(_slice(view, offset, layout.size))


def _slice(view: memoryview, offset: int, length: int) -> memoryview:
    if offset + length > len(view):
        raise ValueError("truncated file")
    return view[offset : offset + length]


def _write_atomically(target: Path, data: bytes) -> None:
    fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise
    _fsync_dir(target.parent)


def _make_dirs(directory: Path) -> None:
    """Create missing folders, making each new entry durable in its parent."""
    if directory.is_dir():
        return
    _make_dirs(directory.parent)
    with contextlib.suppress(FileExistsError):  # a concurrent put created it
        directory.mkdir()
    _fsync_dir(directory.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _corrupt(digest: str, reason: str) -> errors.StorageUnavailable:
    return errors.StorageUnavailable(
        f"the artifact {digest} is corrupt: {reason}", {"digest": digest}
    )
