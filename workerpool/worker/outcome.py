"""Turn a served task into the outcome that ACK_CLAIM records (protocol.ack_claim_args)."""

from __future__ import annotations

import random
import time
from typing import Any

from .. import protocol
from ..protocol import Dead, DeadLetter, Ok, Outcome, Result, Retry, Task
from ..spec import PoolSpec

__all__ = ["Outcome", "dead", "ok", "retry"]


def ok(task: Task, value: Any, spec: PoolSpec) -> Ok:
    """The handler returned `value`: store it as the result (PayloadError if JSON cannot hold it)."""
    data = ""
    if task.task_id and spec.result_ttl_s > 0:
        data = Result("ok", value).to_json()
    return Ok(task.item, task.task_id or "", data)


def retry(task: Task, attempts: int, spec: PoolSpec) -> Retry:
    """Attempt number `attempts` failed and retries remain: schedule the next one."""
    delay_s = spec.retry_delay(attempts, random.random())
    due_ms = protocol.now_ms() + int(delay_s * 1000)
    return Retry(task.item, task.task_id or "", due_ms, protocol.retry_item(task, attempts))


def dead(task: Task | None, item: bytes, attempts: int, error: str, trace: str,
         spec: PoolSpec) -> Dead:
    """The last attempt failed (or the element cannot be served): dead-letter it."""
    task_id = task.task_id if task else None
    entry = DeadLetter(task_id, spec.queue, attempts, error, trace, time.time(), item)
    result = ""
    if task_id and spec.result_ttl_s > 0:
        result = Result("dead", error=error, attempts=attempts).to_json()
    return Dead(item, task_id or "", entry.to_json(), result)
