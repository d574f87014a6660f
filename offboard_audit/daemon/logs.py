"""The daemon's logging: plain lines or one JSON object per line (``--log-format json``, for log
shippers), and the third-party loggers that must not speak at INFO.

Silenced below WARNING: Alembic (a line per migration step at every start), botocore's
credential lookups ("Found credentials in environment variables"), and httpx/httpcore, whose
request line prints the full URL, and notification URLs often carry a token.

Every line (tracebacks included) also goes through the redactions registered with
:func:`redact_in_logs`: the daemon registers the database password (as in the URL, decoded or
encoded) and its notification URLs (shown as scheme and host only).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TextIO

QUIET_LOGGERS = ("alembic", "botocore", "boto3", "httpx", "httpcore", "urllib3", "apscheduler.executors")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


_REDACTIONS: list[Callable[[str], str]] = []


def redact_in_logs(redaction: Callable[[str], str]) -> None:
    """Apply ``redaction`` to every line the daemon's handler writes from now on."""
    _REDACTIONS.append(redaction)


def redacted(text: str) -> str:
    for redaction in _REDACTIONS:
        text = redaction(text)
    return text


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redacted(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message (and the exception, if any).

    Each value is redacted before it is encoded: in the encoded line a secret with a quote, a
    backslash or a control character is JSON-escaped (``pa\\"ss``), which the redaction of the raw
    secret would not find, and the log shipper decodes it back to the secret."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redacted(record.getMessage()),
            "thread": record.threadName,
        }
        if record.exc_info:
            entry["exception"] = redacted(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Set up the root logger for the daemon (replacing any handler a previous call installed)."""
    if fmt not in FORMATS:
        raise ValueError(f"--log-format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    quiet_third_party()


def quiet_third_party() -> None:
    """Third-party loggers speak at WARNING and above only (also before configure_logging)."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
