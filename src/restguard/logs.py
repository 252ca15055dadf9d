"""restguard's own log lines (warnings, errors: reloads, lost audit lines, worker restarts) on
stderr, as text or as one JSON object per line (``[log] format = "json"``), for log shippers.

A JSON line holds ``time`` (RFC 3339, UTC, milliseconds), ``level``, ``logger``, ``message``,
``process`` and, when there was one, ``exception``. Never a secret: the message and the
exception text go through ``tokens.redact`` as every audit line does, so a credential that
ends up in an error message is written as ``rg_xx_[redacted]``. (The decisions themselves are
the audit log's, with their ``request_id``: ``audit.py``.)
"""

from __future__ import annotations

import json
import logging
import time

from restguard.tokens import redact

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, secrets redacted."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = time.gmtime(record.created)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", seconds) + f".{int(record.msecs):03d}Z"
        line: dict[str, object] = {
            "time": stamp,
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
            "process": record.process,
        }
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        # (ASCII: U+2028 and its like would split the line for shippers that split on them)
        return json.dumps(line)


class _RedactingText(logging.Formatter):
    """The text format, secrets redacted all the same."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure(
    log_format: str = "text", level: str = "warning", *, prefix: str = "restguard"
) -> None:
    """Send every logger's records (uvicorn's too) to stderr in ``log_format`` from ``level``
    up, read once at start-up; replaces what an earlier call set."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_RedactingText(f"{prefix}: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
