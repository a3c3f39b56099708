"""The distribution as pip builds it: metadata (licence, authors, URLs, classifiers),
the licence file, ``py.typed`` markers, and an upper bound on every requirement."""

from __future__ import annotations

import asyncio
import email
import shutil
import sys
import zipfile
from email.message import Message
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """A wheel built from a copy of the sources (the build leaves nothing in the tree)."""
    root = tmp_path_factory.mktemp("packaging")
    source = root / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))  # fmt: skip

    async def build() -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
            "--wheel-dir", str(root / "dist"), str(source),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(process.communicate(), 300)
        assert process.returncode == 0, output.decode()

    asyncio.run(build())
    (built,) = (root / "dist").glob("workflow_compute_worker-*.whl")
    return zipfile.ZipFile(built)


@pytest.fixture(scope="module")
def metadata(wheel: zipfile.ZipFile) -> Message:
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    return email.message_from_bytes(wheel.read(name))


def test_the_metadata_names_licence_authors_urls_and_classifiers(metadata: Message) -> None:
    assert metadata["Name"] == "workflow-compute-worker"
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata["Author"] == "compute-worker maintainers"
    assert metadata.get_all("Project-URL") == [
        "Documentation, https://pypi.org/project/workflow-compute-worker/"
    ]
    classifiers = metadata.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert metadata["Requires-Python"] == ">=3.11"


def test_the_wheel_ships_the_licence_and_the_typed_markers(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    (licence,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    assert b"Apache License" in wheel.read(licence) and b"Version 2.0" in wheel.read(licence)
    for package in ("compute_worker", "app", "adapters", "domain"):
        assert f"{package}/py.typed" in names, package
    assert "adapters/sql/migrations/versions/0001_initial_schema.py" in names
    assert "app/demo/workflows.py" in names


def test_every_requirement_has_an_upper_bound(metadata: Message) -> None:
    requirements = metadata.get_all("Requires-Dist") or []
    names = {r.split(";")[0].split("<")[0].split(">")[0].strip() for r in requirements}
    assert {"pydantic-settings", "click", "ruff", "mypy", "pytest", "import-linter"} <= names
    for requirement in requirements:
        assert "<" in requirement.split(";")[0], requirement
