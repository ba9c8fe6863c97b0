"""The worker's serving loop: claim → serve → record the outcomes, until told to stop or idle.

One Redis round trip per batch while busy: ACK_CLAIM records the finished tasks and claims the
next ones. A batch is about protocol.BATCH_WORK_S of work, judged by the worker's recent task
durations: dozens of short tasks, one 50 ms task. When the queue is empty the worker blocks in
BLMOVE (no polling). Serving one task is worker/task.py's; a worker's birth, worker/boot.py's.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import redis

from .. import logs, protocol
from ..connection import connect, replication_wait
from ..process import ExitCode, Role, parent_is, private_memory_mib
from ..protocol import Keys
from ..redis_errors import REDIS_ERRORS, Trouble, drop_stale_connections
from .config import REPORTING_POSITION, WorkerConfig
from .giveback import GiveBack
from .outcome import Outcome
from .signals import WorkerSignals
from .task import TaskRunner

IDLE_WAKE_S = 1.0  # a blocked worker wakes this often to check on its master
# Redis turns a blocking timeout into whole milliseconds, and 0 means "block forever":
# never ask for less than this.
MIN_BLOCK_S = 0.01
MEMORY_CHECK_INTERVAL_S = 0.5
# blocking reads last up to IDLE_WAKE_S; anything far longer means Redis is gone
SOCKET_TIMEOUT_S = IDLE_WAKE_S + 10


def alive_entry(worker_id: str) -> dict[str, float]:
    """The worker's entry in Keys.alive: its member, expiring HEARTBEAT_TTL_S from now."""
    return {Keys.alive_worker(worker_id): protocol.now_ms() + protocol.HEARTBEAT_TTL_S * 1000}


class Worker:
    """Serves tasks from one queue; `run()` returns the reason it stopped."""

    def __init__(self, config: WorkerConfig, redis_url: str, client: redis.Redis | None = None,
                 registered: bool = False) -> None:
        """`client`: a connected client (worker/seed.py), or None to connect here; `registered`:
        the worker is in Keys.alive already."""
        self.cfg = config
        self.spec = config.spec
        self.keys = Keys(config.spec.queue)
        self.processing = self.keys.processing(config.worker_id)
        self.redis = client if client is not None else connect(redis_url,
                                                               socket_timeout=SOCKET_TIMEOUT_S)
        self.ack_claim = self.redis.register_script(protocol.ACK_CLAIM)
        self.in_hand: deque[bytes] = deque()
        self.give_back = GiveBack(redis_url, self.keys, self.processing, self.in_hand,
                                  config.slot)
        self.signals = WorkerSignals(config.spec.task_timeout_s)
        self.tasks = TaskRunner(config, self.signals, self.give_back)
        self.pending: list[Outcome] = []
        self.serving = False  # between slot.begin and slot.end: the master charges the task
        self.trouble = Trouble("worker")
        self.served = 0
        self.backlog = -1
        self.oldest_pending = 0.0
        self.next_memory_check = 0.0
        self.registered = registered

    @property
    def stopping(self) -> bool:
        """SIGTERM arrived: finish the task in hand, record the outcomes, leave."""
        return self.signals.stopping

    def register(self) -> None:
        """Enter Keys.alive, unless the master did before the fork (worker/seed.py).

        A worker must be registered before it claims anything, so that a master finding its
        tasks orphaned (its own master was killed) knows whose they were.
        """
        if not self.registered:
            self._redis(self.redis.zadd, self.keys.alive, alive_entry(self.cfg.worker_id),
                        command="ZADD", key=self.keys.alive)
            self.registered = True

    def run(self, burst: bool = False) -> ExitCode:
        """Serve until told to stop, idle too long (temporary), recycled or orphaned; `burst`:
        until the queue is empty (ExitCode.IDLE), promoting due retries first (no master)."""
        code = ExitCode.OK
        idle_since = time.monotonic()
        promote = self.redis.register_script(protocol.PROMOTE) if burst else None
        while not self.signals.stopping:
            if not self.in_hand:
                # idle after a task that grew it: recycle now, not after some later task (a
                # fresh worker is never recycled before it serves: its successor would be too)
                recycle = self._recycle_reason() if self.served else None
                if recycle:
                    logs.event("worker recycling", reason=recycle, served=self.served)
                    code = ExitCode.RECYCLED
                    break
                code_or_none = (self._take_waiting(promote) if promote is not None
                                else self._wait_for_task(idle_since))
                if code_or_none is not None:
                    code = code_or_none
                    break
                if not self.in_hand:
                    continue
            self._serve_next()
            if not self.in_hand or time.monotonic() - self.oldest_pending >= protocol.ACK_FLUSH_INTERVAL_S:
                self._flush(claim=not self.stopping)
            idle_since = time.monotonic()
            recycle = self._recycle_reason()
            if recycle:
                logs.event("worker recycling", reason=recycle, served=self.served)
                code = ExitCode.RECYCLED
                break
        self._flush(claim=False, release=True)
        return code

    def _orphaned(self) -> bool:
        return self.cfg.master_pid is not None and not parent_is(self.cfg.master_pid)

    def _wait_for_task(self, idle_since: float) -> ExitCode | None:
        """Block for one task; return an exit code when the worker should stop instead."""
        if self._orphaned():
            return ExitCode.ORPHANED
        timeout = IDLE_WAKE_S
        if self.cfg.role is Role.TEMPORARY:
            left = self.spec.idle_timeout_s - (time.monotonic() - idle_since)
            if left < MIN_BLOCK_S:
                return ExitCode.IDLE
            timeout = min(timeout, left)
        logs.flush()  # nothing to do for now: let the log show everything up to here
        item = self._redis(self._blmove, timeout, command="BLMOVE", key=self.spec.queue)
        if item is not None:
            self.in_hand.append(item)
            self._nudge_master()
        return None

    def _take_waiting(self, promote: Any) -> ExitCode | None:
        """A burst's wait: promote the retries that are due (the master's job, and there is
        none), then take one task without blocking; ExitCode.IDLE when there is none."""
        self._redis(promote, [self.keys.delayed, self.spec.queue],
                    [protocol.now_ms(), protocol.PROMOTE_BATCH], command="PROMOTE",
                    key=self.keys.delayed)
        item = self._redis(self.redis.lmove, self.spec.queue, self.processing, "LEFT", "RIGHT",
                           command="LMOVE", key=self.spec.queue)
        if item is None:
            return ExitCode.IDLE
        self.in_hand.append(item)
        return None

    def _nudge_master(self) -> None:
        """Tell the master that work arrived at an idle pool: it reads the backlog (and forks
        temporaries for a burst) now, not at its next idle poll up to 100 ms later."""
        if self.cfg.nudge_fd < 0:
            return
        try:
            os.write(self.cfg.nudge_fd, b"!")
        except OSError:
            pass  # the pipe is full (the master has been nudged already) or gone

    def _blmove(self, timeout: float) -> bytes | None:
        if self.stopping:
            return None
        item = self.redis.blmove(self.spec.queue, self.processing,
                                 timeout, "LEFT", "RIGHT")  # type: ignore[arg-type]  # float is fine
        return cast(bytes | None, item)

    def _serve_next(self) -> None:
        item = self.in_hand.popleft()
        if not self.pending:
            self.oldest_pending = time.monotonic()
        self.cfg.slot.begin(len(self.pending), len(self.in_hand))
        self.serving = True
        # no try/finally: if the worker dies in here, the slot still says busy at this task,
        # so the master charges it an attempt (a poison element cannot loop uncharged)
        done = self.tasks.serve(item, self.backlog)
        self.pending.append(done)
        self.serving = False
        self.cfg.slot.end(len(self.in_hand), done.op)  # counts the outcome for /metrics
        self.served += 1
        if self.tasks.dead is not None:
            self._report_dead()

    def _report_dead(self) -> None:
        """Hand the task just dead-lettered to the errorHandler, once: after its outcome is
        recorded, with nothing charged if it kills the worker (position -1)."""
        dead, self.tasks.dead = self.tasks.dead, None
        if dead is None or self.cfg.error_handler is None:
            return
        self._flush(claim=False)
        self.cfg.slot.begin(REPORTING_POSITION, len(self.in_hand))
        self.tasks.report(dead)
        self.cfg.slot.end(len(self.in_hand))

    def batch_size(self) -> int:
        """How many unstarted tasks this worker may hold: about BATCH_WORK_S of work, 1..prefetch."""
        return self.tasks.batch_size()

    def _flush(self, claim: bool, release: bool = False) -> None:
        """Record pending outcomes, then top up or trim what the worker holds: one round trip.

        The worker holds at most batch_size() unstarted tasks: it claims up to that many, and
        gives the surplus back to the queue head when a slow task shrank the batch (tasks
        claimed as short ones that another worker can start now instead of after it).
        """
        if not self.pending and not claim and not release:
            return
        size = self.batch_size()
        back = list(self.in_hand)[size:] if not release else []
        n_claim = max(0, size - len(self.in_hand)) if claim else 0
        keys, args = protocol.ack_claim_args(self.keys, self.processing, self.pending,
                                             n_claim=n_claim, release=release, back=back,
                                             result_ttl_ms=self.spec.result_ttl_s * 1000)
        reply = self._redis(self._ack_claim, keys, args, command="ACK_CLAIM", key=self.processing,
                            stop_on_shutdown=False)
        self.pending = []
        logs.flush()  # the lines of the tasks just acknowledged
        if reply is None:
            return
        for _ in back:
            self.in_hand.pop()
        self.backlog = int(reply[0])
        self.in_hand.extend(reply[1:])
        self.cfg.slot.hold(len(self.in_hand))
        if len(self.in_hand) > 1:  # the next task starts now; the others wait behind it
            self.give_back.watch()

    def _ack_claim(self, keys: list[str], args: list[Any]) -> Any:
        """ACK_CLAIM; with ?wait_replicas=N, then WAIT (on the same connection) for outcomes."""
        replicas, timeout_ms = replication_wait(self.redis)
        if not replicas or not self.pending:
            return self.ack_claim(keys, args)
        pipe = self.redis.pipeline(transaction=False)
        self.ack_claim(keys, args, client=pipe)
        pipe.wait(replicas, timeout_ms)
        return pipe.execute()[0]

    def _redis(self, fn: Callable[..., Any], *args: Any, command: str, key: str,
               stop_on_shutdown: bool = True) -> Any:
        """Call Redis; ride out any Redis error with capped backoff (redis_errors.Trouble).

        An outage is waited out; an error of another kind is logged with the command and key
        and retried no faster than the backoff: the worker holds outcomes it must record, and
        a worker that crashed on it instead would only crash-loop. None = gave up (stopping
        or orphaned).
        """
        while True:
            try:
                reply = fn(*args)
                self.trouble.succeeded()
                return reply
            except REDIS_ERRORS as e:
                delay = self.trouble.failed(e, command, key)
                drop_stale_connections(self.redis, e)  # READONLY: find the new primary
                if (self.stopping and stop_on_shutdown) or self._orphaned():
                    return None
                time.sleep(delay)  # backoff between retries, not synchronisation

    def blame_oldest(self) -> None:
        """The worker is dying of an unexpected error outside a task: have the master charge
        the oldest task it holds (index 0 of its processing list), so no element that kills
        workers outside the handler can loop uncharged either."""
        if not self.serving and (self.pending or self.in_hand):
            self.cfg.slot.begin(0, len(self.in_hand))

    def _recycle_reason(self) -> str | None:
        if self.spec.max_tasks_per_worker and self.served >= self.spec.max_tasks_per_worker:
            return f"served {self.served} tasks (maxTasksPerWorker)"
        if self.spec.max_memory_mib and time.monotonic() >= self.next_memory_check:
            self.next_memory_check = time.monotonic() + MEMORY_CHECK_INTERVAL_S
            mib = private_memory_mib()
            if mib > self.spec.max_memory_mib:
                return f"private memory {mib:.1f} MiB > maxMemoryMiB={self.spec.max_memory_mib}"
        return None

