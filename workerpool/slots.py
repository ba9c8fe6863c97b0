"""A table in shared memory where each worker shows the master what it is doing.

The master reads busy counts for its scaling decision and task start times for hard timeouts
without a Redis round trip; a worker writes its slot twice per task (a few hundred ns).
"""

from __future__ import annotations

import mmap
import time
from dataclasses import dataclass
from typing import Any

from .spec import MAX_WORKERS_LIMIT

_BUSY, _STARTED, _POSITION, _HELD = range(4)
_WIDTH = 4  # doubles per slot


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

    def read(self, index: int) -> SlotView:
        b = index * _WIDTH
        a = self._a
        return SlotView(a[b + _BUSY] == 1.0, a[b + _STARTED], int(a[b + _POSITION]), int(a[b + _HELD]))

    def writer(self, index: int) -> SlotWriter:
        return SlotWriter(self._a, index * _WIDTH)


class SlotWriter:
    """A worker's handle on its own slot."""

    __slots__ = ("_a", "_b")

    def __init__(self, array: Any, base: int) -> None:
        self._a = array
        self._b = base

    def begin(self, position: int, held: int) -> None:
        a, b = self._a, self._b
        a[b + _STARTED] = time.monotonic()
        a[b + _POSITION] = position
        a[b + _HELD] = held
        a[b + _BUSY] = 1.0

    def end(self, held: int) -> None:
        self._a[self._b + _BUSY] = 0.0
        self._a[self._b + _HELD] = held

    def hold(self, held: int) -> None:
        self._a[self._b + _HELD] = held
