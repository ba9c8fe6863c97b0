"""Log lines that say who (role and pid), when, and what happened.

Text:  2026-11-26 21:50:01.123 permanent[12345] INFO task finished id=1f.. backlog=37
JSON:  {"time": "...", "role": "permanent", "pid": 12345, "level": "INFO", "event": "task finished", ...}
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

LOGGER = logging.getLogger("workerpool")
_role = "master"


def set_role(role: str) -> None:
    """Name this process's role in every later line (called in each forked worker)."""
    global _role
    _role = role


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None) or {}
        tail = "".join(f" {k}={_text(v)}" for k, v in fields.items())
        line = (f"{_stamp(record.created)} {_role}[{record.process}] {record.levelname} "
                f"{record.getMessage()}{tail}")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"time": _stamp(record.created), "role": _role,
                               "pid": record.process, "level": record.levelname,
                               "event": record.getMessage()}
        fields = getattr(record, "fields", None) or {}
        out.update({k: v for k, v in fields.items() if k not in out})  # never overwrite who/when
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def _stamp(created: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created)) + f".{int(created % 1 * 1000):03d}"


def _text(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or not text) else text


def setup(level: str = "INFO", fmt: str = "text") -> None:
    """Send workerpool's log to stderr, one line per event, in `fmt` ('text' or 'json')."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    LOGGER.handlers[:] = [handler]
    LOGGER.setLevel(level.upper())
    LOGGER.propagate = False
    logging.raiseExceptions = False  # a closed stderr must not kill a worker


def event(name: str, level: int = logging.INFO, exc_info: bool = False, **fields: Any) -> None:
    """Log one event with fields: `event("task finished", id=..., backlog=3)`."""
    if LOGGER.isEnabledFor(level):
        LOGGER.log(level, name, extra={"fields": fields}, exc_info=exc_info)

