"""A table in shared memory where each worker shows the master what it is doing.

The master reads busy counts for its scaling decision and task start times for hard timeouts
without a Redis round trip; a worker writes its slot twice per task (a few hundred ns).

Each slot also holds the worker's own task counters (outcomes, task duration and queue wait
histograms). The worker counts in a private list per task (no syscall, no lock) and copies it
into its slot once per Redis round trip, with the acknowledgements, so the slot never shows a
task Redis does not. The master reads the slots for /metrics and adds a slot's counters to its
ledger when it reaps the worker, so a temporary worker's counts outlive it (ledger.py).
"""

from __future__ import annotations

import mmap
from array import array
from bisect import bisect_left
from dataclasses import dataclass
from time import monotonic as _monotonic  # a local name: read on every task
from typing import Any

from .spec import MAX_WORKERS_LIMIT

_BUSY, _STARTED, _POSITION, _HELD = range(4)

# Upper bounds (seconds) of the duration and queue-wait histogram buckets; +Inf is implied.
# Fixed, because every worker writes the same layout the master reads.
BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
             30.0, 60.0, 300.0, 900.0, 3600.0)
OUTCOMES = ("ok", "retried", "dead_lettered")  # the order of the outcome counters
_OP_INDEX = {"ok": 0, "retry": 1, "dead": 2}  # worker/outcome.py's ops -> OUTCOMES index

# The counters region of a slot, after the 4 state doubles; COUNTERS doubles long.
_N_BUCKETS = len(BUCKETS_S) + 1
_OUTCOME0 = 4
DURATION_SUM = len(OUTCOMES)  # offsets inside the counters region
DURATION_BUCKET0 = DURATION_SUM + 1
WAIT_SUM = DURATION_BUCKET0 + _N_BUCKETS
WAIT_BUCKET0 = WAIT_SUM + 1
COUNTERS = WAIT_BUCKET0 + _N_BUCKETS
_WIDTH = _OUTCOME0 + COUNTERS  # doubles per slot


@dataclass(frozen=True, slots=True)
class SlotView:
    """What one worker last wrote."""

    busy: bool
    started_at: float  # time.monotonic() when its current task started
    position: int  # index of the running task in its processing list
    held: int  # tasks it claimed and has not started yet


class SlotTable:
    """Fixed-size shared memory, created before the first fork and inherited by every worker."""

    def __init__(self, size: int = MAX_WORKERS_LIMIT) -> None:
        self.size = size
        self._map = mmap.mmap(-1, size * _WIDTH * 8)  # anonymous and MAP_SHARED on Linux
        self._a: Any = memoryview(self._map).cast("d")  # doubles; typeshed only knows int views
        self._free = list(range(size - 1, -1, -1))

    def acquire(self) -> int:
        """A free slot index for a new worker (master side)."""
        index = self._free.pop()
        self._a[index * _WIDTH:(index + 1) * _WIDTH] = memoryview(bytes(_WIDTH * 8)).cast("d")
        return index

    def release(self, index: int) -> None:
        self._free.append(index)

    def free(self) -> int:
        """How many more workers fit (the table is shared by every pool of one master)."""
        return len(self._free)

    def read(self, index: int) -> SlotView:
        b = index * _WIDTH
        a = self._a
        return SlotView(a[b + _BUSY] == 1.0, a[b + _STARTED], int(a[b + _POSITION]), int(a[b + _HELD]))

    def counters(self, index: int) -> list[float]:
        """A copy of the slot's counters region (COUNTERS doubles; offsets above)."""
        b = index * _WIDTH + _OUTCOME0
        return list(self._a[b:b + COUNTERS])

    def writer(self, index: int) -> SlotWriter:
        return SlotWriter(self._a, index * _WIDTH)


class SlotWriter:
    """A worker's handle on its own slot."""

    __slots__ = ("_a", "_b", "_counts", "_started")

    def __init__(self, shared: Any, base: int) -> None:
        self._a = shared
        self._b = base
        self._counts = [0.0] * COUNTERS  # published to the slot by hold()
        self._started = 0.0

    def begin(self, position: int, held: int) -> None:
        a, b = self._a, self._b
        a[b + _STARTED] = self._started = _monotonic()
        a[b + _POSITION] = position
        a[b + _HELD] = held
        a[b + _BUSY] = 1.0

    def waited(self, seconds: float) -> None:
        """Count one task's queue wait (enqueue -> start); clocks of two hosts may disagree."""
        if seconds < 0.0:
            seconds = 0.0
        c = self._counts
        c[WAIT_SUM] += seconds
        c[WAIT_BUCKET0 + bisect_left(BUCKETS_S, seconds)] += 1

    def end(self, held: int, op: str = "") -> None:
        """The task is over; `op` ("ok" / "retry" / "dead", "" = none) counts its outcome."""
        a, b = self._a, self._b
        a[b + _BUSY] = 0.0
        a[b + _HELD] = held
        index = _OP_INDEX.get(op)
        if index is not None:
            seconds = _monotonic() - self._started
            c = self._counts
            c[index] += 1
            c[DURATION_SUM] += seconds
            c[DURATION_BUCKET0 + bisect_left(BUCKETS_S, seconds)] += 1

    def hold(self, held: int) -> None:
        """After a Redis round trip: tasks claimed and not started; publishes the counters."""
        self._a[self._b + _HELD] = held
        c = self._b + _OUTCOME0
        self._a[c:c + COUNTERS] = array("d", self._counts)
