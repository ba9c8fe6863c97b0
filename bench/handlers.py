"""Handlers the benchmarks run. The module imports what a typical handler module would."""

from __future__ import annotations

import datetime  # noqa: F401 - a typical handler module's imports, preloaded in the master
import decimal  # noqa: F401
import email.message  # noqa: F401
import os
import time
from typing import Any


def noop(payload: Any) -> None:
    return None


def pickup(payload: dict[str, float]) -> float:
    """Seconds from the producer's enqueue call to this worker starting the task."""
    return time.time() - payload["t"]


def sleep50(payload: Any) -> None:
    time.sleep(0.05)


def sleep_stamped(payload: dict[str, float]) -> list[float]:
    """Sleep payload["s"] seconds; return [enqueued, started, ended, pid] for the scenarios."""
    started = time.time()
    time.sleep(payload["s"])
    return [payload["t"], started, time.time(), os.getpid()]
