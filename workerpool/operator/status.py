"""Build a WorkerPool's .status from what its master publishes: pure functions."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from ..protocol import MasterReport
from ..queue import QueueStats


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a pool is not Ready: a condition's reason (CamelCase) and message."""

    reason: str
    message: str
    degraded: bool = True  # False: not serving yet, but nothing is wrong (a master starting)

    @classmethod
    def starting(cls, message: str) -> Problem:
        return cls("Starting", message, degraded=False)


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def counts(stats: QueueStats | None, master_pid: int | None, host: str) -> dict[str, int]:
    """The status counters, for our own master only."""
    if stats is None:
        return {}
    return counts_of(stats, _ours(stats, master_pid, host))


def _ours(stats: QueueStats | None, master_pid: int | None, host: str) -> list[MasterReport]:
    return [m for m in stats.masters if m.pid == master_pid and m.host == host] if stats else []


def counts_of(stats: QueueStats, mine: list[MasterReport]) -> dict[str, int]:
    """The status counters, summed over the masters `mine` (one, or one per worker pod)."""
    return {
        "permanentWorkers": sum(m.permanent for m in mine),
        "temporaryWorkers": sum(m.temporary for m in mine),
        "busyWorkers": sum(m.busy for m in mine),
        "backlog": stats.backlog,
        "processed": stats.processed,
        "failed": stats.failed,
        "deadLettered": stats.dead_lettered,
    }


def condition(kind: str, ok: bool, reason: str, message: str, generation: int,
              previous: list[dict[str, Any]] | None) -> dict[str, Any]:
    """A standard condition; lastTransitionTime changes only when the status flips."""
    status = "True" if ok else "False"
    old = next((c for c in previous or [] if c.get("type") == kind), None)
    since = old["lastTransitionTime"] if old and old.get("status") == status else now_iso()
    return {"type": kind, "status": status, "reason": reason, "message": message,
            "observedGeneration": generation, "lastTransitionTime": since}


def conditions(problem: Problem | None, generation: int,
               previous: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Ready and Degraded, from the pool's problem (None when all is well)."""
    if problem is None:
        return [condition("Ready", True, "Running", "the master and its workers are running",
                          generation, previous),
                condition("Degraded", False, "AsExpected", "", generation, previous)]
    if not problem.degraded:
        return [condition("Ready", False, problem.reason, problem.message, generation, previous),
                condition("Degraded", False, problem.reason, "", generation, previous)]
    return [condition("Ready", False, problem.reason, problem.message, generation, previous),
            condition("Degraded", True, problem.reason, problem.message, generation, previous)]


def build(counters: dict[str, int], problem: Problem | None, generation: int,
          current: Any) -> dict[str, Any]:
    """The part of .status to patch: only what changed, so an idle pool costs no API write."""
    wanted = {**counters, "observedGeneration": generation,
              "conditions": conditions(problem, generation, current.get("conditions"))}
    return changed(current, wanted)


def crash_event(stats: QueueStats | None, master_pid: int | None, host: str,
                seen: int) -> tuple[int, str | None]:
    """(crash count now, an Event message if workers crashed since `seen`)."""
    mine = _ours(stats, master_pid, host)
    if not mine:
        return seen, None
    crashes = mine[0].crashes
    if crashes <= seen:
        return crashes, None
    return crashes, f"{crashes - seen} worker(s) died abnormally; last: {mine[0].last_crash}"


def changed(current: Any, wanted: dict[str, Any]) -> dict[str, Any]:
    """The fields of `wanted` whose value differs from the object's current status."""
    return {k: v for k, v in wanted.items() if current.get(k) != v}


def scale_events(before: dict[str, int], after: dict[str, int]) -> list[tuple[str, str]]:
    """(reason, message) for each change of worker counts worth a Kubernetes Event."""
    events = []
    for field, word in (("temporaryWorkers", "temporary"), ("permanentWorkers", "permanent")):
        old, new = before.get(field), after.get(field)
        if old is None or new is None or old == new:
            continue
        reason = "ScaledUp" if new > old else "ScaledDown"
        events.append((reason, f"{word} workers {old} -> {new}"))
    return events
