"""The worker role: a forked process that serves tasks from one queue."""

from .boot import become_worker
from .config import REPORTING_POSITION, WorkerConfig, error_handler_limit_s
from .inprocess import burst
from .loop import Worker
from .seed import WorkerSeed, plant

__all__ = ["REPORTING_POSITION", "Worker", "WorkerConfig", "WorkerSeed", "become_worker", "burst",
           "error_handler_limit_s", "plant"]
