"""Structured logs: one JSON object per line, carrying the correlation id."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

from compute_worker.adapters.http.context import correlation_id

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    converter = staticmethod(time.gmtime)  # timestamps in UTC, as the "Z" says

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        current = correlation_id.get()
        if current is not None:
            entry["correlationId"] = current
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # alembic logs each of its plugins at info when it is first imported (the server
    # imports it lazily, after this): noise, not an event of the server
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    # httpx says "HTTP Request: POST …" at info for every delivery to a WDK app and every
    # outbound graph request; our own lines say what matters (failures, with the run)
    quiet = logging.NOTSET if root.level <= logging.DEBUG else logging.WARNING
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(quiet)
