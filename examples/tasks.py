"""An example handler module: `workerpool run examples/pool.yaml` from the repository root."""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger("workerpool.examples")


def send_email(payload: dict[str, Any]) -> dict[str, Any]:
    """The business handler: called with the decoded payload; its return value is the result."""
    time.sleep(0.1)  # talk to an SMTP server, say
    return {"sent_to": payload["to"]}


def report(payload: Any, error: str, attempts: int) -> None:
    """Called once a task has failed its last attempt."""
    log.error("giving up on %r after %d attempts: %s", payload, attempts, error)
