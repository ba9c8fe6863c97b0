"""Processes the master adopted: what a handler started and left behind when its worker exited.

The master is a subreaper (process.become_subreaper), so such orphans are re-parented to it
rather than to PID 1; at exit it stops them, so nothing the pool started outlives it.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable

import psutil

from .. import logs

# after SIGTERM they get this long before SIGKILL, and as long again to be gone
ADOPTED_GRACE_S = 2.0


class Adopted:
    """The master's descendants that it did not start as workers."""

    def __init__(self) -> None:
        self.preexisting: set[int] = set()  # children we did not start (an embedded Redis)

    def note_preexisting(self) -> None:
        """Call once at start: children already here are not ours to stop."""
        self.preexisting = {p.pid for p in psutil.Process().children()}

    def stop(self, wait: Callable[[float], object], reap: Callable[[], None],
             interval_s: float) -> None:
        """TERM, then KILL, every adopted descendant; `wait`/`reap` are the master's own, so
        SIGCHLD wakes this and the exits are collected."""
        deadline = time.monotonic() + ADOPTED_GRACE_S
        signalled: set[int] = set()
        while left := self.find():
            late = time.monotonic() >= deadline
            if not signalled:
                logs.event("stopping processes a handler left behind", level=logging.WARNING,
                           pids=",".join(str(p.pid) for p in left))
            for p in left:
                if late or p.pid not in signalled:
                    _signal(p, signal.SIGKILL if late else signal.SIGTERM)
                    signalled.add(p.pid)
            if time.monotonic() >= deadline + ADOPTED_GRACE_S:
                logs.event("processes survived SIGKILL", level=logging.ERROR,
                           pids=",".join(str(p.pid) for p in left))
                return
            wait(interval_s)
            reap()

    def find(self) -> list[psutil.Process]:
        """Live descendants that were not here at start."""
        try:
            found = psutil.Process().children(recursive=True)
        except psutil.Error:
            return []
        out = []
        for p in found:
            try:
                if p.pid not in self.preexisting and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(p)
            except psutil.Error:
                continue
        return out


def _signal(p: psutil.Process, sig: signal.Signals) -> None:
    try:
        p.send_signal(sig)
    except psutil.Error:
        pass  # gone already
