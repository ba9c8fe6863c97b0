"""Serving one task: decode it, call the handler under its time limit, decide its outcome.

The outcome (ok, retry or dead) is what ACK_CLAIM records later, in a batch (worker/loop.py).
A dead-lettered task is also kept for the errorHandler, which the worker calls once the
outcome is recorded (report()).
"""

from __future__ import annotations

import logging
import os
import signal
import time
import traceback
from collections.abc import Callable
from typing import Any

from .. import logs, protocol, tracing
from ..errors import exception_text
from ..process import ExitCode
from ..protocol import Task
from . import outcome
from .config import WorkerConfig, error_handler_limit_s
from .giveback import GiveBack
from .outcome import Outcome
from .signals import WorkerSignals

# The task-cost estimate is the largest recent duration, shrinking by this factor per task: one
# slow task makes the worker take tasks one at a time for a while (a queue mixing 1 ms and 1 s
# tasks is not hoarded), and a stray slow no-op task (a GC pause) costs only a dozen small batches.
TASK_COST_DECAY = 0.8

DeadTask = tuple[Any, str, int, str | None]  # the payload as enqueued, error, attempts, task id


class TaskRunner:
    """Runs one task's user code and decides its outcome; knows nothing of Redis."""

    def __init__(self, config: WorkerConfig, signals: WorkerSignals, give_back: GiveBack) -> None:
        self.cfg = config
        self.spec = config.spec
        self.signals = signals
        self.give_back = give_back
        self.task_cost_s = 0.0  # see TASK_COST_DECAY
        self.dead: DeadTask | None = None  # the last task dead-lettered, for the errorHandler

    def batch_size(self) -> int:
        """How many unstarted tasks the worker may hold: about BATCH_WORK_S of work, 1..prefetch."""
        fits = int(protocol.BATCH_WORK_S / self.task_cost_s) if self.task_cost_s > 0 else 1
        return max(1, min(self.spec.prefetch, fits))

    def serve(self, item: bytes, backlog: int) -> Outcome:
        """Serve one queue element; `backlog` (the queue's length, -1 unknown) is for the log."""
        try:
            task = protocol.decode_item(item)
        except Exception as e:  # BadItem, or anything else a decoder may raise on hostile bytes
            error = f"BadItem: {e}" if isinstance(e, protocol.BadItem) else f"BadItem: {exception_text(e)}"
            logs.event("task dead-lettered", level=logging.ERROR, id="-", error=error)
            self.dead = (item.decode("utf-8", "replace"), error, 1, None)
            return outcome.dead(None, item, 1, error, "", self.spec)
        attempt = task.attempts + 1
        if attempt > self.spec.max_retries + 1:  # its earlier attempts killed their workers
            error = f"WorkerLost: the worker died during each of {task.attempts} attempt(s)"
            return self._dead_letter(task, task.attempts, error, "")
        if attempt == 1 and task.enqueued_at_ms:  # queue wait of first attempts, not retry backoff
            self.cfg.slot.waited(time.time() - task.enqueued_at_ms * 0.001)
        logs.event("task started", level=logging.DEBUG, id=task.task_id or "-", attempt=attempt)
        started = time.monotonic()
        try:
            value = self._call_handler(task)
            done = outcome.ok(task, value, self.spec)
        except BaseException as e:
            self._note_cost(time.monotonic() - started)
            return self._failed(task, attempt, e)
        elapsed = time.monotonic() - started
        self._note_cost(elapsed)
        # the one INFO line per task: which task, how long, what remains (who: the line prefix)
        ms = round(elapsed * 1000, 1)
        shown = backlog if backlog >= 0 else "?"
        if attempt > 1:
            logs.event("task finished", id=task.task_id or "-", ms=ms, backlog=shown,
                       attempt=attempt)
        else:
            logs.event("task finished", id=task.task_id or "-", ms=ms, backlog=shown)
        return done

    def report(self, dead: DeadTask) -> None:
        """Hand a dead task to the errorHandler under its own time limit; log what it raises."""
        if self.cfg.error_handler is None:
            return
        payload, error, attempts, task_id = dead
        try:
            self.call_user(self.cfg.error_handler, error_handler_limit_s(self.spec),
                           payload, error, attempts)
        except BaseException as e:  # user code: anything, SystemExit and TaskTimeout included
            logs.event("errorHandler raised", level=logging.ERROR, id=task_id or "-",
                       error=exception_text(e), traceback=_traceback_text(e))

    def call_user(self, fn: Callable[..., Any], timeout: float, *args: Any) -> Any:
        """Call user code under a time limit (SIGALRM raises TaskTimeout inside it)."""
        if timeout:
            signal.setitimer(signal.ITIMER_REAL, timeout)
        give_back = self.give_back
        give_back.task_started = time.monotonic()
        # the lock moves only while in_handler is False, so a timeout cannot interrupt it
        watched = give_back.active
        if watched:
            give_back.lock.release()  # our unstarted tasks are the helper's while this runs
        signals = self.signals
        try:
            signals.in_handler = True
            return fn(*args)
        finally:
            signals.in_handler = False
            if os.getpid() != signals.pid:  # user code forked and its child returned here:
                os._exit(ExitCode.OK)  # only the worker itself may serve and acknowledge
            if watched:  # (not in a forked child: the helper thread may have held the lock)
                give_back.lock.acquire()
            if timeout:
                signal.setitimer(signal.ITIMER_REAL, 0)
            signals.reclaim()

    def _call_handler(self, task: Task) -> Any:
        timeout = self.spec.task_timeout_s
        if task.traceparent is None:
            return self.call_user(self.cfg.handler, timeout, task.payload)
        return self.call_user(tracing.call, timeout, self.cfg.handler, task.payload,
                              task.traceparent, task.task_id, self.spec.queue)

    def _note_cost(self, seconds: float) -> None:
        self.task_cost_s = max(seconds, self.task_cost_s * TASK_COST_DECAY)

    def _failed(self, task: Task, attempt: int, exc: BaseException) -> Outcome:
        error = exception_text(exc)
        trace = _traceback_text(exc)
        if attempt <= self.spec.max_retries:
            logs.event("task retry", level=logging.WARNING, id=task.task_id or "-",
                       attempt=attempt, error=error)
            return outcome.retry(task, attempt, self.spec)
        return self._dead_letter(task, attempt, error, trace)

    def _dead_letter(self, task: Task, attempts: int, error: str, trace: str) -> Outcome:
        logs.event("task dead-lettered", level=logging.ERROR, id=task.task_id or "-",
                   attempts=attempts, error=error)
        # the errorHandler sees the payload as enqueued, not as the handler left it
        self.dead = (protocol.decode_item(task.item).payload, error, attempts, task.task_id)
        return outcome.dead(task, task.item, attempts, error, trace, self.spec)


def _traceback_text(exc: BaseException) -> str:
    try:
        return "".join(traceback.format_exception(exc))
    except BaseException:  # a hostile exception can break formatting too
        return exception_text(exc)
