"""A worker's signal handlers: they only record, except SIGALRM, which must interrupt user code."""

from __future__ import annotations

# The C module under `signal`: the public wrappers turn every answer into enums, which costs
# ~2.5 µs a call; reclaim() asks after every task (a no-op task takes ~60 µs in all).
import _signal  # type: ignore[import-not-found]  # no stub; same API as signal
import logging
import os
import signal
from collections.abc import Callable
from types import FrameType

from .. import logs
from ..errors import TaskTimeout

Handler = Callable[[int, FrameType | None], None]


class WorkerSignals:
    """SIGTERM sets `stopping`; SIGALRM raises TaskTimeout while user code runs; SIGINT and
    SIGHUP are the master's to coordinate.

    SIGINT and SIGHUP get a handler that does nothing rather than SIG_IGN: an ignored signal
    stays ignored across exec, and the programs a handler starts must still stop on Ctrl+C.
    """

    def __init__(self, task_timeout_s: float) -> None:
        self.stopping = False
        self.in_handler = False  # user code runs: SIGALRM may interrupt it
        self.pid = os.getpid()  # set again by install(): a handler's fork must not serve
        self._timeout_s = task_timeout_s
        self._handlers: dict[int, Handler] = {}

    def install(self) -> None:
        """Install the handlers (in the process that serves: pid is taken from here)."""
        self.pid = os.getpid()
        signal.signal(signal.SIGHUP, _nothing)
        # the bound methods are kept: reclaim() checks by identity that they are in place
        self._handlers = {signal.SIGTERM: self._on_term, signal.SIGALRM: self._on_alarm,
                          signal.SIGINT: _nothing}
        for signum, handler in self._handlers.items():
            signal.signal(signum, handler)

    def reclaim(self) -> None:
        """User code may have replaced our handlers (ignored SIGTERM, say) or blocked signals:
        take them back, so the worker still drains when told and the next task still has its
        time limit. One syscall per task when nothing changed."""
        if _signal.pthread_sigmask(signal.SIG_BLOCK, ()):  # the current mask, unchanged
            logs.event("user code blocked signals in the worker; unblocked", level=logging.WARNING)
            signal.pthread_sigmask(signal.SIG_SETMASK, ())
        if any(_signal.getsignal(signum) is not handler for signum, handler in self._handlers.items()):
            logs.event("user code replaced the worker's signal handlers; restored",
                       level=logging.WARNING)
            self.install()

    def _on_term(self, signum: int, frame: FrameType | None) -> None:
        # a blocked BLMOVE returns within IDLE_WAKE_S, then the loop sees the flag
        self.stopping = True

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        if self.in_handler:
            raise TaskTimeout(f"exceeded taskTimeoutSeconds={self._timeout_s:g}")


def _nothing(signum: int, frame: FrameType | None) -> None:
    """A handler that does nothing (unlike SIG_IGN, it is not inherited across exec)."""
