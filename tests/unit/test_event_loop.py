"""The event_loop setting: auto picks uvloop when installed; asyncio and uvloop as said."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

from compute_worker.adapters.system import resolve_event_loop, run_on_loop
from compute_worker.app.errors import StartupError
from compute_worker.app.settings import Settings


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def test_auto_is_uvloop_when_installed() -> None:
    installed = importlib.util.find_spec("uvloop") is not None
    assert resolve_event_loop("auto") == ("uvloop" if installed else "asyncio")
    assert resolve_event_loop("asyncio") == "asyncio"


def test_each_choice_runs_on_its_loop() -> None:
    assert run_on_loop(_loop_module(), "asyncio") == "asyncio"
    if importlib.util.find_spec("uvloop") is not None:
        assert run_on_loop(_loop_module(), "uvloop") == "uvloop"


def test_an_unknown_loop_is_refused_with_the_choices() -> None:
    with pytest.raises(StartupError, match="'auto', 'asyncio', 'uvloop'"):
        Settings.load({"event_loop": "trio"}, env={})
    assert Settings.load({"event_loop": "UVLOOP"}, env={}).event_loop == "uvloop"
