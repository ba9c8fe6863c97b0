"""The worker role: a forked process that serves tasks from one queue."""

from .loop import Worker, WorkerConfig, run_worker

__all__ = ["Worker", "WorkerConfig", "run_worker"]
