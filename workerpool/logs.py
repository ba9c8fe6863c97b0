"""Log lines that say who (role and pid), when, and what happened.

Text:  2026-11-26 21:50:01.123 permanent[12345] INFO task finished id=1f.. ms=0.1 backlog=37
JSON:  {"time": "...", "role": "permanent", "pid": 12345, "level": "INFO", "event": "task finished", ...}

A worker logs one line per task, so the line is formatted here directly rather than through a
logging.LogRecord (which costs a caller lookup and a dozen attribute writes per line), and a
worker holds its INFO lines until `flush()`, which it calls with every acknowledgement and
before it blocks: one write(2) per batch instead of one per line. Warnings and errors are
written at once. Events with a traceback go through the logging module as usual.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any, TextIO

LOGGER = logging.getLogger("workerpool")
_role = "master"
_pid = os.getpid()


def set_role(role: str) -> None:
    """Name this process's role in every later line (called in each forked worker)."""
    global _role, _pid
    _role = role
    _pid = os.getpid()


class _Sink:
    """Formats lines and writes them to one stream, holding INFO and below when buffered."""

    def __init__(self, stream: TextIO, fmt: str) -> None:
        self.stream = stream
        self.json = fmt == "json"
        self.buffered = False
        self.held: list[str] = []
        self._second = -1
        self._second_text = ""

    def write(self, level: int, name: str, fields: dict[str, Any], trace: str | None = None,
              created: float | None = None) -> None:
        line = self.format(level, name, fields, trace, time.time() if created is None else created)
        self.held.append(line)
        if not self.buffered or level > logging.INFO:
            self.flush()

    def format(self, level: int, name: str, fields: dict[str, Any], trace: str | None,
               created: float) -> str:
        if self.json:
            out: dict[str, Any] = {"time": self._stamp(created), "role": _role, "pid": _pid,
                                   "level": logging.getLevelName(level), "event": name}
            out.update({k: v for k, v in fields.items() if k not in out})  # never overwrite who/when
            if trace:
                out["traceback"] = trace
            return json.dumps(out, default=str) + "\n"
        tail = "".join([f" {k}={_text(v)}" for k, v in fields.items()])
        line = f"{self._stamp(created)} {_role}[{_pid}] {logging.getLevelName(level)} {name}{tail}\n"
        return line + trace + "\n" if trace else line

    def _stamp(self, created: float) -> str:
        second = int(created)
        if second != self._second:  # strftime once a second, not once a line
            self._second = second
            self._second_text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return f"{self._second_text}.{int(created % 1 * 1000):03d}"

    def flush(self) -> None:
        if not self.held:
            return
        held, self.held = self.held, []  # a swap: a line added meanwhile is not lost
        text = "".join(held)
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed stderr must not kill a worker
            pass


class _SinkHandler(logging.Handler):
    """The logging-module path (events with a traceback), written through the same sink."""

    def __init__(self, sink: _Sink) -> None:
        super().__init__()
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        trace = logging.Formatter().formatException(record.exc_info) if record.exc_info else None
        self.sink.write(record.levelno, record.getMessage(), getattr(record, "fields", None) or {},
                        trace, record.created)


_sink: _Sink | None = None


def _text(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or not text) else text


def setup(level: str = "INFO", fmt: str = "text") -> None:
    """Send workerpool's log to stderr, one line per event, in `fmt` ('text' or 'json')."""
    global _sink
    _sink = _Sink(sys.stderr, fmt)
    LOGGER.handlers[:] = [_SinkHandler(_sink)]
    LOGGER.setLevel(level.upper())
    LOGGER.propagate = False
    logging.raiseExceptions = False  # a closed stderr must not kill a worker


def buffer_until_flush() -> None:
    """Hold INFO lines until flush() (a worker: it flushes with each acknowledgement)."""
    if _sink is not None:
        _sink.held.clear()  # lines the parent held before the fork are the parent's to write
        _sink.buffered = True


def flush() -> None:
    """Write the lines held since the last flush."""
    if _sink is not None:
        _sink.flush()


def event(name: str, level: int = logging.INFO, exc_info: bool = False, **fields: Any) -> None:
    """Log one event with fields: `event("task finished", id=..., backlog=3)`."""
    if not LOGGER.isEnabledFor(level):
        return
    if _sink is not None and not exc_info:
        _sink.write(level, name, fields)
    else:
        LOGGER.log(level, name, extra={"fields": fields}, exc_info=exc_info)
