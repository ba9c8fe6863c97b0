"""What a worker is given: its configuration, and the limits the master applies to it too."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..process import Role
from ..slots import SlotWriter
from ..spec import PoolSpec

# The errorHandler's time limit when taskTimeoutSeconds is 0 (no limit): it reports a dead
# task, and a hung one must not hold its worker (and the tasks it claimed) forever.
ERROR_HANDLER_TIMEOUT_S = 60.0
# The slot position a worker shows while its errorHandler runs: busy (so the master's hard
# timeout applies) but holding no task to charge if it dies there (the outcome is recorded).
REPORTING_POSITION = -1


def error_handler_limit_s(spec: PoolSpec) -> float:
    """The errorHandler's time limit: taskTimeoutSeconds, or ERROR_HANDLER_TIMEOUT_S if none."""
    return spec.task_timeout_s or ERROR_HANDLER_TIMEOUT_S


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """Everything a worker needs, built by the master before the fork."""

    spec: PoolSpec
    role: Role
    worker_id: str
    # the master's pid: a worker whose parent is another process is orphaned and leaves.
    # None: no master (a burst in the caller's own process, worker/inprocess.py)
    master_pid: int | None
    slot: SlotWriter
    handler: Callable[..., Any]
    error_handler: Callable[..., Any] | None
    nudge_fd: int = -1  # a pipe to the master: written when an idle worker gets a task
