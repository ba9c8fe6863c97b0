"""Exceptions of workerpool, one base class.

    WorkerPoolError
    ├── SpecError            a manifest or flag is invalid (names the field, the value, what is allowed)
    ├── HandlerImportError   the handler or errorHandler cannot be imported
    ├── PayloadError         a payload cannot be encoded as JSON
    ├── TaskFailed           Queue.result(): the task was dead-lettered
    └── ResultTimeout        Queue.result(): no result within the timeout

TaskTimeout is raised *inside* a running handler when it exceeds its time limit. It derives
from BaseException so that a handler's broad ``except Exception`` cannot swallow it.
"""

from __future__ import annotations

from typing import Any


class WorkerPoolError(Exception):
    """Base class of every error workerpool raises on purpose."""


class SpecError(WorkerPoolError):
    """A WorkerPool manifest, or a flag that overrides it, is invalid."""

    def __init__(self, field: str, value: Any, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field}: {value!r} is invalid: {allowed}")


class HandlerImportError(WorkerPoolError):
    """A `module:function` reference cannot be imported or is not callable."""


class PayloadError(WorkerPoolError):
    """A payload given to Queue.enqueue cannot be encoded as JSON."""


class TaskFailed(WorkerPoolError):
    """The task was dead-lettered: its last attempt failed."""

    def __init__(self, task_id: str, error: str, attempts: int) -> None:
        self.task_id = task_id
        self.error = error
        self.attempts = attempts
        super().__init__(f"task {task_id} failed after {attempts} attempt(s): {error}")


class ResultTimeout(WorkerPoolError):
    """Queue.result() waited for the whole timeout and no result came."""


class TaskTimeout(BaseException):
    """Raised inside a handler that ran longer than spec.taskTimeoutSeconds."""


def exception_text(exc: BaseException) -> str:
    """`Type: message` for any exception, even one whose __str__ raises (user code may)."""
    name = type(exc).__name__
    try:
        text = str(exc)
    except BaseException:  # a raising __str__ must not hide the failure it describes
        text = "<str() of the exception failed>"
    return f"{name}: {text}" if text else name
