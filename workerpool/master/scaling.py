"""The scaling decision: a pure function of what the master sees and the spec's bounds.

Permanent workers: exactly minWorkers (replace the dead, retire the surplus after a resize).
Temporary workers: forked when tasks wait that the idle workers cannot absorb, one per
scaleUpBacklog waiting tasks, up to maxWorkers in all; they exit by themselves when idle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..spec import DEFAULTS


@dataclass(frozen=True, slots=True)
class Observed:
    """One look at a pool: live workers by role, how many are busy, what waits."""

    permanent: int
    temporary: int
    busy: int  # workers running a task now
    waiting: int  # tasks in the queue + tasks claimed by workers but not started yet


@dataclass(frozen=True, slots=True)
class Bounds:
    min_workers: int
    max_workers: int
    scale_up_backlog: int = DEFAULTS["scale_up_backlog"]


@dataclass(frozen=True, slots=True)
class Decision:
    fork_permanent: int = 0
    fork_temporary: int = 0
    retire_permanent: int = 0
    retire_temporary: int = 0


def decide(seen: Observed, bounds: Bounds, may_fork: bool = True) -> Decision:
    """What to fork and retire now. `may_fork` is False during crash-loop backoff: it holds
    back every fork, temporaries too (a poison task kills those as well)."""
    fork_permanent = max(0, bounds.min_workers - seen.permanent) if may_fork else 0
    retire_permanent = max(0, seen.permanent - bounds.min_workers)
    permanent = seen.permanent + fork_permanent - retire_permanent
    # after a resize (maxWorkers lowered) temporaries above the ceiling are retired
    retire_temporary = max(0, min(seen.temporary, permanent + seen.temporary - bounds.max_workers))
    alive = permanent + seen.temporary - retire_temporary
    idle = max(0, alive - seen.busy)
    unabsorbed = max(0, seen.waiting - idle)
    wanted = math.ceil(unabsorbed / bounds.scale_up_backlog)
    fork_temporary = max(0, min(wanted, bounds.max_workers - alive)) if may_fork else 0
    return Decision(fork_permanent, fork_temporary, retire_permanent, retire_temporary)
