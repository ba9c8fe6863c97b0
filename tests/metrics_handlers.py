"""Handlers for the metrics and `top` tests (imported by workers as `metrics_handlers:NAME`)."""

from __future__ import annotations

import time
from typing import Any


def sleepy(payload: dict[str, Any]) -> Any:
    """Sleep payload['s'] seconds, then fail if payload['fail'], else return the payload."""
    time.sleep(payload.get("s", 0))
    if payload.get("fail"):
        raise RuntimeError("asked to fail")
    return payload
