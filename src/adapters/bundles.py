"""Uploaded bundles → ``{path: bytes}``: JSON bodies, zip and tar.gz archives.

Archives are read in memory and never extracted. Every rule that keeps a hostile
upload harmless is applied while reading, before anything is stored: paths go
through ``clean_bundle_path``; links, devices and duplicates are refused; the
number of entries and the uncompressed size are counted as bytes actually come
out of the decompressor (declared sizes are only used to refuse early), so a
small archive that inflates to gigabytes stops at the limit instead of filling
memory.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import stat
import tarfile
import tomllib
import zipfile
import zlib
from collections.abc import Mapping
from typing import IO, Any, Protocol

from compute_worker.domain import deployments, errors
from compute_worker.domain.deployments import KINDS, clean_bundle_path

MANIFEST = "workflow.toml"
_CHUNK = 64 * 1024
_ENTRY_FACTOR = 4  # directory entries count too, up to this many times the file limit
_TAR_OVERHEAD_PER_ENTRY = 2 * 1024  # header, long-name or pax record, padding
_TAR_SLACK = 1024 * 1024  # end-of-archive blocks and record padding
_DIGEST_TAG = b"compute-worker-bundle-v1\n"
_ARCHIVE_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    tarfile.TarError,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    RuntimeError,  # zipfile: encrypted entry
    NotImplementedError,  # zipfile: unsupported compression method
)


def files_from_json(files: object) -> dict[str, bytes]:
    """The ``files`` object of a JSON upload, ``{path: utf-8 text}``."""
    if not isinstance(files, dict):
        raise errors.InvalidDeployment("files must be an object of {path: text}")
    _check_count(len(files))
    collected = _Collector()
    for path, text in files.items():
        if not isinstance(path, str) or not isinstance(text, str):
            raise errors.InvalidDeployment(
                f"files[{str(path)[:80]!r}] must be a string of UTF-8 text"
            )
        try:
            content = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise errors.InvalidDeployment(f"files[{path[:80]!r}] is not valid text") from exc
        collected.add(path, content)
    return collected.done()


def files_from_zip(data: bytes) -> dict[str, bytes]:
    """The regular files of a zip archive."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return _read_zip(archive)
    except _ARCHIVE_ERRORS as exc:
        raise errors.InvalidDeployment(f"corrupt or unsupported zip archive: {exc}") from exc


def files_from_targz(data: bytes) -> dict[str, bytes]:
    """The regular files of a gzip-compressed tar archive."""
    limit = (
        deployments.MAX_BUNDLE_BYTES
        + _ENTRY_FACTOR * deployments.MAX_BUNDLE_FILES * _TAR_OVERHEAD_PER_ENTRY
        + _TAR_SLACK
    )
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb") as unzipped:
            stream = _BoundedReader(unzipped, limit)
            with tarfile.open(fileobj=stream, mode="r|") as archive:  # type: ignore[call-overload]
                return _read_tar(archive)
    except _ARCHIVE_ERRORS as exc:
        raise errors.InvalidDeployment(f"corrupt or unsupported tar.gz archive: {exc}") from exc


def read_manifest(files: Mapping[str, bytes]) -> dict[str, Any]:
    """The optional ``workflow.toml`` at the bundle root: ``kind``, ``entrypoint`` and a
    ``[metadata]`` table; only the keys present are returned."""
    raw = files.get(MANIFEST)
    if raw is None:
        return {}
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise errors.InvalidDeployment(f"{MANIFEST} is not valid TOML: {exc}") from exc
    manifest: dict[str, Any] = {}
    for key in ("kind", "entrypoint"):
        if key in document:
            if not isinstance(document[key], str):
                raise errors.InvalidDeployment(f"{MANIFEST}: {key} must be a string")
            manifest[key] = document[key]
    if "kind" in manifest and manifest["kind"] not in KINDS:
        raise errors.InvalidDeployment(f"{MANIFEST}: kind must be one of {', '.join(KINDS)}")
    if "metadata" in document:
        if not isinstance(document["metadata"], dict):
            raise errors.InvalidDeployment(f"{MANIFEST}: metadata must be a table")
        manifest["metadata"] = document["metadata"]
    return manifest


def bundle_digest(files: Mapping[str, bytes]) -> str:
    """``sha256:<hex>`` of the bundle's content, independent of upload format and order.

    Each path and content is length-prefixed, so no two different bundles share an
    encoding (``{"ab": b"c"}`` vs ``{"a": b"bc"}``)."""
    digest = hashlib.sha256(_DIGEST_TAG)
    digest.update(len(files).to_bytes(8, "big"))
    for path in sorted(files):
        encoded = path.encode("utf-8")
        content = files[path]
        digest.update(len(encoded).to_bytes(8, "big"))
        digest.update(encoded)
        digest.update(len(content).to_bytes(8, "big"))
        digest.update(content)
    return "sha256:" + digest.hexdigest()


class _Collector:
    """Accumulates files while enforcing the count, size and path rules."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.total = 0
        self.entries = 0

    def entry(self) -> None:
        """Count any archive entry (directories too) to bound the work done."""
        self.entries += 1
        limit = _ENTRY_FACTOR * deployments.MAX_BUNDLE_FILES
        if self.entries > limit:
            raise errors.InvalidDeployment(f"the bundle holds more than {limit} entries")

    def path(self, raw: str) -> str:
        """Clean a member's path and reserve it: refused when unsafe, repeated or one
        too many."""
        path = clean_bundle_path(raw)
        try:
            path.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise errors.InvalidDeployment(f"path is not valid UTF-8: {path!r}") from exc
        if path in self.files:
            raise errors.InvalidDeployment(f"duplicate path in bundle: {path!r}")
        _check_count(len(self.files) + 1)
        return path

    def grow(self, size: int) -> None:
        self.total += size
        if self.total > deployments.MAX_BUNDLE_BYTES:
            raise errors.InvalidDeployment(
                f"the bundle exceeds {deployments.MAX_BUNDLE_BYTES} bytes uncompressed"
            )

    def add(self, raw: str, content: bytes) -> None:
        path = self.path(raw)
        self.grow(len(content))
        self.files[path] = content

    def read(self, path: str, stream: IO[bytes]) -> None:
        """Read one member (``path`` from ``self.path``) in bounded pieces, counting
        toward the size limit as it goes."""
        pieces: list[bytes] = []
        while piece := stream.read(_CHUNK):
            self.grow(len(piece))
            pieces.append(piece)
        self.files[path] = b"".join(pieces)

    def done(self) -> dict[str, bytes]:
        _check_file_dir_clash(self.files)
        return self.files


def _read_zip(archive: zipfile.ZipFile) -> dict[str, bytes]:
    members = archive.infolist()
    collected = _Collector()
    declared = sum(info.file_size for info in members)
    if declared > deployments.MAX_BUNDLE_BYTES:  # early refusal; the real count is below
        raise errors.InvalidDeployment(
            f"the bundle exceeds {deployments.MAX_BUNDLE_BYTES} bytes uncompressed"
        )
    for info in members:
        collected.entry()
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise errors.InvalidDeployment(f"links are not allowed in a bundle: {info.filename!r}")
        if info.is_dir() or stat.S_ISDIR(mode):
            _check_dir_path(info.filename)
            continue
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG):
            raise errors.InvalidDeployment(f"special file in bundle: {info.filename!r}")
        path = collected.path(info.filename)  # refuse bad names before decompressing
        with archive.open(info) as member:
            collected.read(path, member)
    return collected.done()


def _read_tar(archive: tarfile.TarFile) -> dict[str, bytes]:
    collected = _Collector()
    for member in archive:  # a stream: one member at a time
        collected.entry()
        if member.isdir():
            _check_dir_path(member.name)
            continue
        if member.issym() or member.islnk():
            raise errors.InvalidDeployment(f"links are not allowed in a bundle: {member.name!r}")
        if not member.isfile() or member.issparse():
            raise errors.InvalidDeployment(f"special file in bundle: {member.name!r}")
        path = collected.path(member.name)
        if member.size > deployments.MAX_BUNDLE_BYTES:  # early refusal; counted while reading
            collected.grow(member.size)
        stream = archive.extractfile(member)
        if stream is None:  # pragma: no cover - regular files always have a stream
            raise errors.InvalidDeployment(f"unreadable member in bundle: {member.name!r}")
        with stream:
            collected.read(path, stream)
    return collected.done()


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _BoundedReader:
    """A read-only stream that refuses to produce more than ``limit`` bytes.

    tarfile itself buffers pax headers and long names in memory using their declared
    sizes; bounding the decompressed stream bounds that too."""

    def __init__(self, source: _Readable, limit: int) -> None:
        self._source = source
        self._left = limit

    def read(self, size: int = -1) -> bytes:
        wanted = self._left + 1 if size < 0 else min(size, self._left + 1)
        data = self._source.read(wanted)
        self._left -= len(data)
        if self._left < 0:
            raise errors.InvalidDeployment("the archive is too large once decompressed")
        return data


def _check_count(count: int) -> None:
    if count > deployments.MAX_BUNDLE_FILES:
        raise errors.InvalidDeployment(
            f"the bundle holds more than {deployments.MAX_BUNDLE_FILES} files"
        )


def _check_dir_path(name: str) -> None:
    """Directory entries are skipped, but one naming a path outside the bundle still
    marks a hostile archive."""
    stripped = name.rstrip("/")
    if stripped not in ("", "."):
        clean_bundle_path(stripped)


def _check_file_dir_clash(files: Mapping[str, bytes]) -> None:
    """``a`` and ``a/b`` cannot both be files: the bundle could not be laid out on disk."""
    for path in files:
        parts = path.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent in files:
                raise errors.InvalidDeployment(
                    f"{parent!r} is both a file and a directory in the bundle"
                )
