"""What the master counts for /metrics beyond the live slots: counters that must never reset.

A worker's task counters live in its shared-memory slot; when the master reaps it, they are
added here (by role), so a temporary worker's counts outlive it and every counter only grows.
The master also counts what only it sees: forks, exits by reason, tasks lost with a crashed
worker, Redis errors.
"""

from __future__ import annotations

import signal
from collections import Counter
from dataclasses import dataclass, field

import redis

from .process import ExitCode, KillReason, Role
from .slots import COUNTERS, SlotTable

ROLES = tuple(Role)
# Exit reasons as a metric label: a small closed set, never an exit code or a signal number.
_CLEAN_REASONS = {ExitCode.OK: "stopped", ExitCode.IDLE: "idle", ExitCode.RECYCLED: "recycled",
                  ExitCode.ORPHANED: "orphaned", ExitCode.BOOT_FAILED: "boot_failed"}
EXIT_REASONS = (*_CLEAN_REASONS.values(), "shutdown", "timeout", "killed", "crashed")


def exit_reason(status: int, killed_for: KillReason | None) -> str:
    """The `reason` label of a worker exit (decoded wait status; negative = killed by a signal)."""
    if killed_for is KillReason.SHUTDOWN:
        return "shutdown"
    if killed_for:
        return "timeout"  # the master killed it for outliving its task or errorHandler limit
    if status == -signal.SIGKILL:
        return "killed"  # the kernel's OOM killer, or someone's kill -9
    if status in _CLEAN_REASONS:
        return _CLEAN_REASONS[ExitCode(status)]
    return "crashed"


@dataclass(slots=True)
class Ledger:
    """One pool's counters kept by the master (all grow monotonically)."""

    retired: dict[str, list[float]] = field(
        default_factory=lambda: {role: [0.0] * COUNTERS for role in ROLES})
    forks: Counter[str] = field(default_factory=Counter)  # role -> workers forked
    exits: Counter[tuple[str, str]] = field(default_factory=Counter)  # (role, reason) -> exits
    lost: Counter[str] = field(default_factory=Counter)  # role -> tasks running when a worker died
    redis_errors: Counter[str] = field(default_factory=Counter)  # kind -> errors

    def worker_exited(self, slots: SlotTable, slot: int, role: Role, reason: str, lost: bool) -> None:
        """Fold an exited worker's slot into the totals; call before the slot is released."""
        totals = self.retired[role]
        for i, value in enumerate(slots.counters(slot)):
            totals[i] += value
        self.exits[(role, reason)] += 1
        self.lost[role] += lost

    def redis_error(self, error: Exception) -> None:
        self.redis_errors[redis_error_kind(error)] += 1


def redis_error_kind(error: Exception) -> str:
    """The `kind` label of a Redis error: timeout, connection or other."""
    if isinstance(error, redis.TimeoutError):
        return "timeout"
    return "connection" if isinstance(error, redis.ConnectionError) else "other"
