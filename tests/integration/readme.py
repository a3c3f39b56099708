"""The README's own commands, run as a user runs them.

Blocks of the README marked ``<!-- readme-test: NAME -->`` (a shell block) or
``<!-- readme-test: file PATH -->`` (a file the user writes) are extracted here, so the
test follows the README whenever it changes. A shell block runs line by line in bash,
in the user's working directory, with the variables earlier lines set; the README's
placeholders (``<runId>``, ``<deploymentId>``) take the last value of that field in
an earlier command's JSON answer (or the last ``wrun_…`` / ``dpl_…`` id a command
printed), ``export NAME=value`` lines set a variable for the lines after them, and
``localhost:8080`` is the test server's port.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[2] / "README.md"
_MARK = re.compile(r"<!-- readme-test: (?P<what>[^>]+?) -->\n+```[a-z]*\n(?P<body>.*?)```", re.S)
_ASSIGNMENT = re.compile(r"^(?:export )?(?P<name>[A-Z_][A-Z0-9_]*)=(?P<value>.+?)(?:\s+#.*)?$")
_PRINTED_IDS = {"runId": re.compile(r"\bwrun_[0-9A-Z]{26}\b"),
                "deploymentId": re.compile(r"\bdpl_[0-9A-Z]{26}\b")}  # fmt: skip
_PLACEHOLDER = re.compile(r"<(?P<field>[a-zA-Z]+)>")


def blocks(readme: Path = README) -> dict[str, str]:
    """Marked blocks by name (``file PATH`` for files), in README order."""
    return {m["what"].strip(): m["body"] for m in _MARK.finditer(readme.read_text())}


def commands(block: str) -> list[str]:
    """Logical command lines: continuations joined, blank and comment lines left out."""
    joined = re.sub(r"\\\n\s*", " ", block)
    lines = [line.strip() for line in joined.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


@dataclass
class Shell:
    """A user at a terminal in ``cwd``: commands see the variables earlier ones set."""

    cwd: Path
    port: int
    env: dict[str, str] = field(default_factory=dict)
    seen: dict[str, Any] = field(default_factory=dict)  # last value of each JSON field
    transcript: list[tuple[str, int, str]] = field(default_factory=list)

    def run_block(self, block: str) -> list[str]:
        return [self.run(line) for line in commands(block)]

    def run(self, line: str, timeout: float = 60) -> str:
        line = self._substitute(line)
        assignment = _ASSIGNMENT.match(line)
        script = f'{assignment["name"]}={assignment["value"]}; printf %s "${assignment["name"]}"' \
            if assignment else line  # fmt: skip
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", script],
            cwd=self.cwd,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        self.transcript.append((line, done.returncode, done.stdout + done.stderr))
        if done.returncode != 0:
            raise AssertionError(f"README command failed ({done.returncode}): {line}\n"
                                 f"{done.stdout}{done.stderr}")  # fmt: skip
        if assignment:
            self.env[assignment["name"]] = done.stdout
        self._learn(done.stdout)
        return done.stdout

    def start(self, line: str) -> subprocess.Popen[str]:
        """Start a command that runs until something else happens (a live watch), as a
        user would in a second terminal; ``finish`` waits for it."""
        line = self._substitute(line)
        process = subprocess.Popen(
            ["bash", "-o", "pipefail", "-c", line], cwd=self.cwd, env={**os.environ, **self.env},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.transcript.append((line, -1, "(started)"))
        return process

    def finish(self, process: subprocess.Popen[str], timeout: float = 60) -> str:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
            raise AssertionError(f"README command still running after {timeout} s:\n"
                                 f"{stdout}{stderr}") from None  # fmt: skip
        if process.returncode != 0:
            raise AssertionError(f"README command failed ({process.returncode}):\n"
                                 f"{stdout}{stderr}")  # fmt: skip
        self._learn(stdout)
        return stdout

    def _substitute(self, line: str) -> str:
        line = line.replace("localhost:8080", f"127.0.0.1:{self.port}")
        line = line.replace("127.0.0.1:8080", f"127.0.0.1:{self.port}")

        def value(match: re.Match[str]) -> str:
            name = match["field"]
            return str(self.seen[name]) if name in self.seen else match[0]

        return _PLACEHOLDER.sub(value, line)

    def _learn(self, output: str) -> None:
        for name, pattern in _PRINTED_IDS.items():
            printed = pattern.findall(output)
            if printed:
                self.seen[name] = printed[-1]
        for text in output.splitlines() or [output]:
            try:
                answer = json.loads(text)
            except ValueError:
                continue
            if isinstance(answer, dict):
                self.seen.update({k: v for k, v in answer.items() if isinstance(v, str)})
