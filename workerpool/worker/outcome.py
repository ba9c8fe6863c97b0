"""Turn a served task into the ACK_CLAIM arguments that record its outcome."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from .. import logs, protocol
from ..protocol import Task
from ..spec import PoolSpec

Outcome = tuple[str, bytes, str, str | bytes, str | bytes]  # op, item, id, x, y


def ok(task: Task, value: Any, spec: PoolSpec) -> Outcome:
    """The handler returned `value`: store it as the result."""
    data = ""
    if task.task_id and spec.result_ttl_s > 0:
        data = protocol.dumps({"status": "ok", "value": value})
    return ("ok", task.item, task.task_id or "", data, "")


def retry(task: Task, attempts: int, spec: PoolSpec) -> Outcome:
    """Attempt number `attempts` failed and retries remain: schedule the next one."""
    delay_s = spec.retry_delay(attempts, random.random())
    due_ms = protocol.now_ms() + int(delay_s * 1000)
    return ("retry", task.item, task.task_id or "", str(due_ms), protocol.retry_item(task, attempts))


def dead(task: Task | None, item: bytes, attempts: int, error: str, trace: str,
         spec: PoolSpec) -> Outcome:
    """The last attempt failed (or the element cannot be served): dead-letter it."""
    task_id = task.task_id if task else None
    entry: dict[str, Any] = {"id": task_id, "queue": spec.queue, "attempts": attempts,
                             "error": error, "traceback": trace, "failed_at": time.time()}
    try:
        entry["item"] = item.decode("utf-8")
    except UnicodeDecodeError:
        entry["item_latin1"] = item.decode("latin-1")  # byte for byte, for `dead requeue`
    result = ""
    if task_id and spec.result_ttl_s > 0:
        result = protocol.dumps({"status": "dead", "error": error, "attempts": attempts})
    return ("dead", item, task_id or "", protocol.dumps(entry), result)


def call_error_handler(error_handler: Callable[..., Any] | None, payload: Any, error: str,
                       attempts: int, task_id: str | None) -> None:
    """Hand a dead task to the user's errorHandler; its own failure is logged, never raised."""
    if error_handler is None:
        return
    try:
        error_handler(payload, error, attempts)
    except Exception:
        logs.event("errorHandler raised", level=40, exc_info=True, id=task_id or "-")
