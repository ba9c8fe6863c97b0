"""The pod-level scaling decision: a pure function of what the pool's masters publish.

Two levels, one owner each. Inside a pod, its master forks worker processes in milliseconds
(`workerpool.master.scaling`); the operator adds a pod only when the pods cannot absorb the
backlog themselves, and removes pods only when the busy workers have fit in fewer pods for a
whole cooldown. Pods are added in proportion to the unabsorbed backlog and removed idlest
first, so a scale-in never picks a pod whose workers are running tasks when an idle one exists.

The function keeps no state of its own: the two timers it needs (since when the pods have been
saturated, since when fewer pods would do) travel in `Timers`, which the caller stores and
passes back on the next look.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..spec import POD_DEFAULTS


@dataclass(frozen=True, slots=True)
class PodSeen:
    """One worker pod, as its master last published it."""

    name: str
    ready: bool  # the pod's master is serving (a starting pod has no workers yet)
    busy: int  # workers running a task now


@dataclass(frozen=True, slots=True)
class PodBounds:
    """`spec.pods` and the per-pod ceiling it multiplies."""

    min_pods: int
    max_pods: int
    max_workers: int  # workers per pod at most (the pool's maxWorkers)
    stabilization_s: float = POD_DEFAULTS["stabilization_s"]  # tasks wait unabsorbed this long first
    cooldown_s: float = POD_DEFAULTS["cooldown_s"]  # fewer pods must suffice this long first


@dataclass(frozen=True, slots=True)
class Timers:
    """What the decision remembers between looks (monotonic seconds; None = not running)."""

    saturated_since: float | None = None
    surplus_since: float | None = None


@dataclass(frozen=True, slots=True)
class PodDecision:
    desired: int  # the number of pods the pool should have now
    remove: tuple[str, ...] = ()  # which pods to remove, idlest first (len = pods - desired)
    reason: str = ""  # why the count changed: for the Event and the log ("" = no change)


def decide_pods(pods: list[PodSeen], waiting: int, bounds: PodBounds, timers: Timers,
                now: float) -> tuple[PodDecision, Timers]:
    """The pod count the pool should have now, which pods to remove, and the timers to keep.

    `waiting` is the pool's backlog: tasks in the queue plus tasks claimed but not started.
    """
    current = len(pods)
    if current < bounds.min_pods or current > bounds.max_pods:  # a spec edit: follow it at once
        desired = min(max(current, bounds.min_pods), bounds.max_pods)
        return _resize(pods, desired, f"pods.min/max is {bounds.min_pods}..{bounds.max_pods}"), Timers()

    busy = sum(p.busy for p in pods)
    # a pod that is starting absorbs tasks as soon as it is up: count its capacity as free
    free = current * bounds.max_workers - busy
    unabsorbed = max(0, waiting - free)
    if unabsorbed > 0 and current < bounds.max_pods:
        since = timers.saturated_since if timers.saturated_since is not None else now
        if now - since < bounds.stabilization_s:
            return PodDecision(current), Timers(saturated_since=since)
        desired = min(bounds.max_pods, current + math.ceil(unabsorbed / bounds.max_workers))
        reason = f"backlog: {unabsorbed} task(s) wait with all {current} pod(s) busy"
        return PodDecision(desired, reason=reason), Timers()

    # the fewest pods that hold every busy worker and every waiting task
    needed = max(bounds.min_pods, math.ceil((busy + waiting) / bounds.max_workers))
    if needed >= current or any(not p.ready for p in pods):
        return PodDecision(current), Timers()  # no surplus, or a pod still starting: keep counting later
    since = timers.surplus_since if timers.surplus_since is not None else now
    if now - since < bounds.cooldown_s:
        return PodDecision(current), Timers(surplus_since=since)
    reason = f"busy: {busy} busy worker(s) and {waiting} waiting task(s) fit in {needed} pod(s)"
    return _resize(pods, needed, reason), Timers()


def _resize(pods: list[PodSeen], desired: int, reason: str) -> PodDecision:
    """The decision for a new count; when it shrinks, the pods to remove, idlest first."""
    surplus = len(pods) - desired
    if surplus <= 0:
        return PodDecision(desired, reason=reason)
    # not-ready pods first (they serve nothing yet), then the fewest busy workers; the name
    # breaks ties so that the same look always picks the same pods
    idlest = sorted(pods, key=lambda p: (p.ready, p.busy, p.name))
    return PodDecision(desired, tuple(p.name for p in idlest[:surplus]), reason)
