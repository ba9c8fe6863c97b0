"""The worker role: a forked process that serves tasks from one queue."""

from .loop import REPORTING_POSITION, Worker, WorkerConfig, error_handler_limit_s, run_worker

__all__ = ["REPORTING_POSITION", "Worker", "WorkerConfig", "error_handler_limit_s", "run_worker"]
