"""What wakes the master's loop: signals (through a self-pipe) and workers' nudges.

Signal handlers only record: `signal.set_wakeup_fd` writes each signal's number to a pipe and
the handler itself does nothing, so no work (no logging, no I/O) ever runs inside a handler.
"""

from __future__ import annotations

import os
import select
import signal

HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD, signal.SIGQUIT)
_PIPE_READ_BYTES = 4096  # one read drains every signal number / nudge written since the last


class Wakeup:
    """The master's two pipes: signal numbers, and nudges from workers that got work while
    idle (Worker._nudge_master), which make the master read the backlog at once."""

    def __init__(self) -> None:
        self._signals_r, self._signals_w = os.pipe()
        self._nudges_r, self.nudge_fd = os.pipe()  # the workers inherit the write end

    def install(self) -> None:
        """In the master: every handled signal lands in the pipe, the handler does nothing."""
        for fd in (self._signals_r, self._signals_w, self._nudges_r, self.nudge_fd):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self._signals_w, warn_on_full_buffer=False)
        for sig in HANDLED:
            signal.signal(sig, _record_only)

    def undo_in_child(self) -> None:
        """In a freshly forked worker: default handlers, and only the nudge pipe's write end."""
        signal.set_wakeup_fd(-1)
        for sig in HANDLED:
            signal.signal(sig, signal.SIG_DFL)
        for fd in (self._signals_r, self._signals_w, self._nudges_r):
            os.close(fd)

    def wait(self, timeout: float, others: list[int]) -> tuple[list[int], list[int], bool]:
        """Sleep until a signal, a nudge or one of `others` is ready, or `timeout` passes.

        Returns the signals received, which of `others` are ready, and whether a worker nudged.
        """
        try:
            ready = select.select([self._signals_r, self._nudges_r, *others], [], [], timeout)[0]
        except InterruptedError:
            ready = []
        nudged = self._nudges_r in ready
        if nudged:
            _drain(self._nudges_r)
        return list(_drain(self._signals_r)), [fd for fd in ready if fd in others], nudged


def _drain(fd: int) -> bytes:
    try:
        return os.read(fd, _PIPE_READ_BYTES)
    except BlockingIOError:
        return b""


def _record_only(signum: int, frame: object) -> None:
    """Signal handler: nothing; set_wakeup_fd already wrote the signal number for the loop."""
