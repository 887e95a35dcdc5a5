"""Logging: human lines on stderr, or JSON lines with ``--output json``.

Every record passes through the process-wide redactor, so a secret value that
reaches a log message is masked before it is written anywhere.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

from stagecraft.redact import Redactor

LOGGER_NAME = "stagecraft"
_redactor = Redactor()


def get_logger(name: str | None = None) -> logging.Logger:
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)


_known_secrets: list[str] = []


def add_secrets(*values: str) -> None:
    """Mask these values in every log record (and in `redactor()`) from now on."""
    global _redactor
    _known_secrets.extend(v for v in values if v and v not in _known_secrets)
    _redactor = Redactor(_known_secrets)


def redactor() -> Redactor:
    """The redactor that knows every secret registered in this process."""
    return _redactor


class _HumanFormatter(logging.Formatter):
    _PREFIX = {logging.DEBUG: "debug: ", logging.WARNING: "warning: ",
               logging.ERROR: "error: ", logging.CRITICAL: "error: "}

    def format(self, record: logging.LogRecord) -> str:
        message = _redactor.text(record.getMessage())
        fields = getattr(record, "fields", None)
        if fields:
            message += " " + " ".join(f"{k}={_redactor.text(str(v))}" for k, v in fields.items())
        return self._PREFIX.get(record.levelno, "") + message


class _JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            data.update(fields)
        if record.exc_info and record.levelno >= logging.ERROR:
            data["exception"] = self.formatException(record.exc_info)
        return _redactor.text(json.dumps(_redactor.data(data), default=str))


def setup(*, verbosity: int = 0, quiet: bool = False, output: str = "text",
          stream: TextIO | None = None) -> None:
    """Configure the stagecraft logger once per process (idempotent)."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_JSONFormatter() if output == "json" else _HumanFormatter())
    logger.addHandler(handler)
    logger.propagate = False
    if quiet:
        logger.setLevel(logging.WARNING)
    elif verbosity > 0:
        logger.setLevel(logging.DEBUG)
    else:
        logger.setLevel(logging.INFO)
