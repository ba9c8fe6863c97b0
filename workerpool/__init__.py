"""workerpool: a self-scaling multi-process worker pool for Redis queues.

The public API is the producer side; the pool itself is run with the `workerpool` command.
"""

from .errors import (
    HandlerImportError,
    PayloadError,
    ResultTimeout,
    SpecError,
    TaskFailed,
    TaskTimeout,
    WorkerPoolError,
)
from .queue import Queue
from .tracing import current_traceparent

__version__ = "0.1.0"

__all__ = [
    "HandlerImportError",
    "PayloadError",
    "Queue",
    "ResultTimeout",
    "SpecError",
    "TaskFailed",
    "TaskTimeout",
    "WorkerPoolError",
    "__version__",
    "current_traceparent",
]
