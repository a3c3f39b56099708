"""The distribution as pip builds it: one import root (``compute_worker``) and nothing
else installed top-level, metadata (licence, authors, URLs, classifiers), the licence
file, the ``py.typed`` marker, an upper bound on every requirement — and the wheel's
files alone serve, next to a user's own ``app``, ``domain`` and ``adapters`` packages."""

from __future__ import annotations

import asyncio
import email
import json
import os
import shutil
import subprocess
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
    shutil.copytree(REPO / "src", source / "src", symlinks=True,  # as git checks it out
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


def test_the_wheel_installs_one_import_root(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    (info,) = {name.split("/")[0] for name in names if ".dist-info/" in name}
    assert {name.split("/")[0] for name in names} == {"compute_worker", info}
    assert wheel.read(f"{info}/top_level.txt").split() == [b"compute_worker"]
    for package in ("domain", "adapters", "app"):  # the source folders, under the root
        assert f"compute_worker/{package}/__init__.py" in names, package
    assert "compute_worker/adapters/sql/migrations/versions/0001_initial_schema.py" in names
    assert "compute_worker/app/demo/workflows.py" in names
    for asset in ("index.html", "ui.css", "main.js", "api.js", "dom.js", "runs.js", "run.js",
                  "deployments.js"):  # fmt: skip
        assert f"compute_worker/adapters/http/ui/{asset}" in names, asset  # the dashboard


def test_the_wheel_ships_the_licence_and_the_typed_marker(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    (licence,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    assert b"Apache License" in wheel.read(licence) and b"Version 2.0" in wheel.read(licence)
    assert "compute_worker/py.typed" in names


def test_every_requirement_has_an_upper_bound(metadata: Message) -> None:
    requirements = metadata.get_all("Requires-Dist") or []
    names = {r.split(";")[0].split("<")[0].split(">")[0].strip() for r in requirements}
    assert {"pydantic-settings", "click", "ruff", "mypy", "pytest", "import-linter"} <= names
    for requirement in requirements:
        assert "<" in requirement.split(";")[0], requirement


SERVE_FROM_THE_WHEEL = """
import asyncio, json, sys
from pathlib import Path

site, data = sys.argv[1], Path(sys.argv[2])
sys.path[:] = [site] + [p for p in sys.path if not p.endswith("/src")]  # the wheel, not src
import app, domain, adapters  # the user's own, in the working directory
assert (app.MINE, domain.MINE, adapters.MINE) == ("app", "domain", "adapters")

import httpx
import compute_worker
from compute_worker import start_compute_worker_server
assert compute_worker.__file__.startswith(site), compute_worker.__file__

KEY = "wheel-test-key-0123456789abcdefghij"
BUNDLE = "from compute_worker import workflow\\n@workflow\\nasync def hi(): return 'hi'\\n"

async def main():
    server = await start_compute_worker_server(
        port=0, data_dir=data, seed_api_keys=[{"key": KEY, "scopes": ["deploy:write"]}]
    )
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            health = (await client.get("/v1/health")).json()
            created = await client.post(
                "/v1/deployments", headers={"Authorization": f"Bearer {KEY}"},
                json={"kind": "python", "files": {"workflows.py": BUNDLE}},
            )
        print(json.dumps({"health": health["status"], "deployed": created.status_code,
                          "workflows": [w["name"] for w in created.json()["workflows"]]}))
    finally:
        await server.close()

asyncio.run(main())
"""


def test_the_wheel_alone_serves_beside_a_users_own_packages(
    wheel: zipfile.ZipFile, tmp_path: Path
) -> None:
    """Unpacked as pip installs it, the wheel starts a server that migrates its database
    and checks an upload in its describe child, in a working directory whose own
    ``app``, ``domain`` and ``adapters`` packages stay the user's."""
    site = tmp_path / "site-packages"
    wheel.extractall(site)
    work = tmp_path / "work"
    for package in ("app", "domain", "adapters"):
        (work / package).mkdir(parents=True)
        (work / package / "__init__.py").write_text(f"MINE = {package!r}\n")
    done = subprocess.run(
        [sys.executable, "-c", SERVE_FROM_THE_WHEEL, str(site), str(tmp_path / "data")],
        cwd=work, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(work)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer == {"health": "ok", "deployed": 201, "workflows": ["hi"]}
