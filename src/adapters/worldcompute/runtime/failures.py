"""How failures of a bundle's code are recorded and reported.

A failure is shown with the frames of the bundle's own files only, by their
bundle-relative paths, so a user sees their code and nothing of the installation.
Shared by the upload check, both backends and the engine, so that a bundle fails
the same way wherever it runs.
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path
from typing import Any


class StartFailed(Exception):
    """A run's code could not be started: its process did not come up, or its bundle did
    not load. ``message`` names the file and error for the user; ``stack`` holds only the
    bundle's own frames."""

    def __init__(self, message: str, stack: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.stack = stack


def error_data(
    error: BaseException, code: str | None = None, code_root: Path | None = None
) -> dict[str, Any]:
    """A failure as the World records it; the stack holds only the frames of the bundle
    under ``code_root`` (bundle-relative), never the server's."""
    stack = user_traceback(error, code_root)
    data: dict[str, Any] = {"error": {"message": str(error) or type(error).__name__,
                                      "stack": stack}}  # fmt: skip
    if code is not None:
        data["errorCode"] = code
    return data


class RunCancelled(Exception):
    """The run reached a terminal state elsewhere (cancelled); stop executing it."""


def user_traceback(error: BaseException, folder: Path | None) -> str:
    """The traceback of ``error`` reduced to the frames of the bundle's own files, with
    bundle-relative paths; just the exception line where no frame is the user's."""
    root = str(folder.resolve()) + os.sep if folder is not None else None
    blocks = []
    for item in _chain(error):
        frames = [
            frame
            for frame in traceback.extract_tb(item.__traceback__)
            if root is not None and frame.filename.startswith(root)
        ]
        block = ["Traceback (most recent call last):\n"] if frames else []
        block += traceback.format_list(frames) + traceback.format_exception_only(item)
        blocks.append("".join(block))
    text = "\nThe above exception was the direct cause of the following exception:\n\n".join(blocks)
    return text.replace(root, "") if root is not None else text


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and its explicit causes, oldest first, as Python prints them."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain and len(chain) < 10:
        chain.append(current)
        current = current.__cause__
    return list(reversed(chain))


def describe_error(error: BaseException, folder: Path | None) -> str:
    """One line a user can act on: the exception and, when known, the bundle file and line."""
    lines = traceback.format_exception_only(error)
    # a SyntaxError's lines show the code and a caret (the stack has them); say its last
    message = (lines[-1] if isinstance(error, SyntaxError) else "".join(lines)).strip()
    root = str(folder.resolve()) + os.sep if folder is not None else None
    where = None
    for frame in traceback.extract_tb(error.__traceback__):
        if root is not None and frame.filename.startswith(root):
            where = f"{frame.filename[len(root) :]}, line {frame.lineno}"
    if isinstance(error, SyntaxError) and error.filename and root is not None:
        filename = str(error.filename)
        if filename.startswith(root):
            where = f"{filename[len(root) :]}, line {error.lineno}"
        message = message.replace(root, "")
    return f"{message} ({where})" if where else message
