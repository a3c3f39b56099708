"""Log configuration: JSON lines on stderr; the HTTP client's per-request lines only when
debugging."""

from __future__ import annotations

import json
import logging

import pytest

from compute_worker.app.logs import configure_logging


def test_http_client_request_lines_show_only_at_debug(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging("info")
        logging.getLogger("httpx").info("HTTP Request: POST http://app/ 200 OK")
        logging.getLogger("compute_worker.test").info("delivered", extra={"runId": "wrun_1"})
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
        assert [(line["message"], line.get("runId")) for line in lines] == [("delivered", "wrun_1")]
        configure_logging("debug")
        logging.getLogger("httpx").info("HTTP Request: POST http://app/ 200 OK")
        assert "HTTP Request" in capsys.readouterr().err
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.NOTSET)
