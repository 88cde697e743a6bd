"""Structured logs: one JSON object per line, for log shippers (Loki, Elasticsearch, journald).

    {"ts": "2026-11-26T12:00:00.123Z", "level": "INFO", "logger": "ipx.gateway.orders",
     "message": "order rejected", "journal_seq": 42, "order_id": 0, ...}

Invariants:
- Every line is one complete JSON object (newlines inside messages are escaped), so a reader
  can split on newlines and parse each line alone.
- ts (UTC, millisecond precision), level, logger and message are always present; the fields
  a caller passes with `extra=` follow under their own names; an exception is in `exc_info`.
- A value JSON cannot hold (an enum, a path) is written as its str(), never dropped.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

FORMATS = ("json", "text")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

# The attributes every LogRecord has: anything else on a record came from `extra=`.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Formats each record as one line of JSON: ts, level, logger, message, then the extras."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = int(record.created)
        millis = int((record.created - seconds) * 1000)
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, separators=(",", ":"))


def handler(log_format: str, stream: Any = None) -> logging.Handler:
    """Return a stream handler (stderr by default) writing log_format ("json" or "text")."""
    if log_format not in FORMATS:
        raise ValueError(f"log format {log_format!r} is not one of {', '.join(FORMATS)}")
    out = logging.StreamHandler(sys.stderr if stream is None else stream)
    out.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    return out


def install(log_format: str, level: int = logging.INFO) -> logging.Handler:
    """Make the root logger write log_format to stderr at level (replacing its handlers)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    installed = handler(log_format)
    root.addHandler(installed)
    root.setLevel(level)
    return installed
