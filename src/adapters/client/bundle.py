"""Deployment bundles as the client uploads them: a folder or a dict of files becomes
a zip built in memory; a ``.zip`` or ``.tar.gz`` file is sent as it is."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SKIPPED_DIRS = frozenset(
    {"__pycache__", ".git", ".venv", ".mypy_cache", ".pytest_cache", ".ruff_cache"}
)
SKIPPED_SUFFIXES = (".pyc", ".pyo")
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the same files make the same archive
Source = str | os.PathLike[str] | Mapping[str, str | bytes]


@dataclass(frozen=True)
class Bundle:
    content: bytes
    content_type: str
    files: int | None = None  # how many files went in (None: an archive sent as is)


def bundle_from(source: Source) -> Bundle:
    """Read (blocking I/O: the async client runs this in a thread)."""
    if isinstance(source, Mapping):
        return _zip({str(path): _bytes(content) for path, content in source.items()})
    path = Path(source)
    if path.is_dir():
        return _zip(_folder_files(path))
    if not path.is_file():
        raise FileNotFoundError(f"no folder or bundle file at {path}")
    name = path.name.lower()
    if name.endswith(".zip"):
        return Bundle(path.read_bytes(), "application/zip")
    if name.endswith((".tar.gz", ".tgz")):
        return Bundle(path.read_bytes(), "application/gzip")
    raise ValueError(f"{path}: give a folder, a .zip or a .tar.gz file, or a dict of files")


def _bytes(content: str | bytes) -> bytes:
    return content.encode() if isinstance(content, str) else bytes(content)


def _folder_files(root: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in sorted(names):
            if name.endswith(SKIPPED_SUFFIXES) or name == ".DS_Store":
                continue
            path = Path(folder) / name
            if path.is_symlink():
                raise ValueError(f"{path} is a symbolic link; bundles hold regular files only")
            files[path.relative_to(root).as_posix()] = path.read_bytes()
    if not files:
        raise ValueError(f"{root} holds no files to deploy")
    return files


def _zip(files: Mapping[str, bytes]) -> Bundle:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(files):
            info = zipfile.ZipInfo(path, ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, files[path])
    return Bundle(buffer.getvalue(), "application/zip", len(files))
