"""The worker process: claim → handle → record the outcome, until told to stop or idle.

One Redis round trip per batch while busy: ACK_CLAIM records the finished tasks and claims the
next ones. A batch is about protocol.BATCH_WORK_S of work, judged by the worker's recent task
durations: dozens of short tasks, one 50 ms task. When the queue is empty the worker blocks in
BLMOVE (no polling).
"""

from __future__ import annotations

# The C module under `signal`: the public wrappers turn every answer into enums, which costs
# ~2.5 µs a call; _reclaim_signals asks after every task (a no-op task takes ~60 µs in all).
import _signal  # type: ignore[import-not-found]  # no stub; same API as signal
import logging
import os
import signal
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any, cast

import redis

from .. import logs, protocol, tracing
from ..connection import replication_wait
from ..errors import TaskTimeout, exception_text
from ..process import ExitCode, Role, parent_is
from ..protocol import Keys, Task
from ..queue import connect
from ..redis_errors import REDIS_ERRORS, Trouble, drop_stale_connections
from ..slots import SlotWriter
from ..spec import PoolSpec
from . import outcome
from .giveback import GiveBack
from .outcome import Outcome

IDLE_WAKE_S = 1.0  # a blocked worker wakes this often to check on its master
# Redis turns a blocking timeout into whole milliseconds, and 0 means "block forever":
# never ask for less than this.
MIN_BLOCK_S = 0.01
MEMORY_CHECK_INTERVAL_S = 0.5
# The errorHandler's time limit when taskTimeoutSeconds is 0 (no limit): it reports a dead
# task, and a hung one must not hold its worker (and the tasks it claimed) forever.
ERROR_HANDLER_TIMEOUT_S = 60.0
# The slot position a worker shows while its errorHandler runs: busy (so the master's hard
# timeout applies) but holding no task to charge if it dies there (the outcome is recorded).
REPORTING_POSITION = -1
# The task-cost estimate is the largest recent duration, shrinking by this factor per task: one
# slow task makes the worker take tasks one at a time for a while (a queue mixing 1 ms and 1 s
# tasks is not hoarded), and a stray slow no-op task (a GC pause) costs only a dozen small batches.
TASK_COST_DECAY = 0.8


def error_handler_limit_s(spec: PoolSpec) -> float:
    """The errorHandler's time limit: taskTimeoutSeconds, or ERROR_HANDLER_TIMEOUT_S if none."""
    return spec.task_timeout_s or ERROR_HANDLER_TIMEOUT_S


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """Everything a forked worker needs, built by the master before the fork."""

    spec: PoolSpec
    role: Role
    worker_id: str
    master_pid: int
    slot: SlotWriter
    handler: Callable[..., Any]
    error_handler: Callable[..., Any] | None
    nudge_fd: int = -1  # a pipe to the master: written when an idle worker gets a task


class Worker:
    """Serves tasks from one queue; `run()` returns the reason it stopped."""

    def __init__(self, config: WorkerConfig, redis_url: str) -> None:
        self.cfg = config
        self.spec = config.spec
        self.keys = Keys(config.spec.queue)
        self.processing = self.keys.processing(config.worker_id)
        self.redis = _preconnected(redis_url)
        self.ack_claim = self.redis.register_script(protocol.ACK_CLAIM)
        self.in_hand: deque[bytes] = deque()
        self.give_back = GiveBack(redis_url, self.keys, self.processing, self.in_hand,
                                  config.slot)
        self.pending: list[Outcome] = []
        self.stopping = False
        self.in_handler = False
        self._handlers: dict[int, Callable[[int, FrameType | None], None]] = {}
        self.serving = False  # between slot.begin and slot.end: the master charges the task
        self.pid = os.getpid()  # set again in the child: a handler's fork must not serve
        self.trouble = Trouble("worker")
        self.report_dead: tuple[Any, str, int, str | None] | None = None
        self.served = 0
        self.task_cost_s = 0.0  # see TASK_COST_DECAY
        self.backlog = -1
        self.oldest_pending = 0.0
        self.next_memory_check = 0.0
        self.registered = False
        self.forked_at = 0.0  # time.perf_counter() in the master just before the fork
        tracing.opentelemetry()  # imported once in the master (if installed), not in each child

    # --- signals ------------------------------------------------------------------------

    def install_signals(self) -> None:
        """Handlers only record (SIGALRM, which must interrupt user code, is the exception).

        SIGINT and SIGHUP get a handler that does nothing rather than SIG_IGN: Ctrl+C is the
        master's to coordinate, but an ignored signal stays ignored across exec, and the
        programs a handler starts must still stop on Ctrl+C.
        """
        self.pid = os.getpid()
        signal.signal(signal.SIGHUP, _nothing)
        # the bound methods are kept: _reclaim_signals checks by identity that they are in place
        self._handlers = {signal.SIGTERM: self._on_term, signal.SIGALRM: self._on_alarm,
                          signal.SIGINT: _nothing}
        for signum, handler in self._handlers.items():
            signal.signal(signum, handler)

    def _on_term(self, signum: int, frame: FrameType | None) -> None:
        # a blocked BLMOVE returns within IDLE_WAKE_S, then the loop sees the flag
        self.stopping = True

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        if self.in_handler:
            raise TaskTimeout(f"exceeded taskTimeoutSeconds={self.spec.task_timeout_s:g}")

    # --- main loop ----------------------------------------------------------------------

    def _alive_entry(self) -> dict[str, float]:
        return {f"w:{self.cfg.worker_id}": protocol.now_ms() + protocol.HEARTBEAT_TTL_S * 1000}

    def prepare(self) -> None:
        """Master side, before the fork: enter Keys.alive on the worker's own connection.

        A worker must be registered before it claims anything, so that a master finding its
        tasks orphaned (its own master was killed) knows whose they were. Doing it here saves
        the child a round trip; if Redis is unreachable now, the child registers itself.
        """
        try:
            self.redis.zadd(self.keys.alive, self._alive_entry())
            self.registered = True
        except REDIS_ERRORS:
            self.registered = False

    def register(self) -> None:
        """Child side: register unless the master already did (see prepare)."""
        if not self.registered:
            self._redis(self.redis.zadd, self.keys.alive, self._alive_entry(),
                        command="ZADD", key=self.keys.alive)
            self.registered = True

    def run(self) -> ExitCode:
        """Serve until told to stop, idle too long (temporary), recycled or orphaned."""
        code = ExitCode.OK
        idle_since = time.monotonic()
        while not self.stopping:
            if not self.in_hand:
                # idle after a task that grew it: recycle now, not after some later task (a
                # fresh worker is never recycled before it serves: its successor would be too)
                recycle = self._recycle_reason() if self.served else None
                if recycle:
                    logs.event("worker recycling", reason=recycle, served=self.served)
                    code = ExitCode.RECYCLED
                    break
                code_or_none = self._wait_for_task(idle_since)
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

    def _wait_for_task(self, idle_since: float) -> ExitCode | None:
        """Block for one task; return an exit code when the worker should stop instead."""
        if not parent_is(self.cfg.master_pid):
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

    def hand_over(self, child_pid: int) -> None:
        """Master side, after the fork: the child owns the connected socket now.

        Mark our copy as the child's, so that when the master drops it redis-py only closes the
        descriptor instead of shutdown(2), which would cut the child's connection too.
        """
        connection = getattr(self.redis, "connection", None)  # a Cluster client has none:
        if connection is not None:  # its pools see the fork and connect afresh in the child
            connection.pid = child_pid

    # --- one task -----------------------------------------------------------------------

    def _serve_next(self) -> None:
        item = self.in_hand.popleft()
        if not self.pending:
            self.oldest_pending = time.monotonic()
        self.cfg.slot.begin(len(self.pending), len(self.in_hand))
        self.serving = True
        # no try/finally: if the worker dies in here, the slot still says busy at this task,
        # so the master charges it an attempt (a poison element cannot loop uncharged)
        done = self._serve(item)
        self.pending.append(done)
        self.serving = False
        self.cfg.slot.end(len(self.in_hand), done.op)  # counts the outcome for /metrics
        self.served += 1
        if self.report_dead is not None:
            self._report_dead(*self.report_dead)

    def _note_cost(self, seconds: float) -> None:
        self.task_cost_s = max(seconds, self.task_cost_s * TASK_COST_DECAY)

    def batch_size(self) -> int:
        """How many unstarted tasks this worker may hold: about BATCH_WORK_S of work, 1..prefetch."""
        fits = int(protocol.BATCH_WORK_S / self.task_cost_s) if self.task_cost_s > 0 else 1
        return max(1, min(self.spec.prefetch, fits))

    def _serve(self, item: bytes) -> Outcome:
        try:
            task = protocol.decode_item(item)
        except Exception as e:  # BadItem, or anything else a decoder may raise on hostile bytes
            error = f"BadItem: {e}" if isinstance(e, protocol.BadItem) else f"BadItem: {exception_text(e)}"
            logs.event("task dead-lettered", level=logging.ERROR, id="-", error=error)
            self.report_dead = (item.decode("utf-8", "replace"), error, 1, None)
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
        backlog = self.backlog if self.backlog >= 0 else "?"
        if attempt > 1:
            logs.event("task finished", id=task.task_id or "-", ms=ms, backlog=backlog,
                       attempt=attempt)
        else:
            logs.event("task finished", id=task.task_id or "-", ms=ms, backlog=backlog)
        return done

    def _call_handler(self, task: Task) -> Any:
        timeout = self.spec.task_timeout_s
        if task.traceparent is None:
            return self._call_user(self.cfg.handler, timeout, task.payload)
        return self._call_user(tracing.call, timeout, self.cfg.handler, task.payload,
                               task.traceparent, task.task_id, self.spec.queue)

    def _call_user(self, fn: Callable[..., Any], timeout: float, *args: Any) -> Any:
        """Call user code under a time limit (SIGALRM raises TaskTimeout inside it)."""
        if timeout:
            signal.setitimer(signal.ITIMER_REAL, timeout)
        give_back = self.give_back
        give_back.task_started = time.monotonic()
        # the lock moves only while in_handler is False, so a timeout cannot interrupt it
        watched = give_back.active
        if watched:
            give_back.lock.release()  # our unstarted tasks are the helper's while this runs
        try:
            self.in_handler = True
            return fn(*args)
        finally:
            self.in_handler = False
            if os.getpid() != self.pid:  # user code forked and its child returned here:
                os._exit(ExitCode.OK)  # only the worker itself may serve and acknowledge
            if watched:  # (not in a forked child: the helper thread may have held the lock)
                give_back.lock.acquire()
            if timeout:
                signal.setitimer(signal.ITIMER_REAL, 0)
            self._reclaim_signals()

    def _reclaim_signals(self) -> None:
        """User code may have replaced our handlers (ignored SIGTERM, say) or blocked signals:
        take them back, so the worker still drains when told and the next task still has its
        time limit. One syscall per task when nothing changed."""
        if _signal.pthread_sigmask(signal.SIG_BLOCK, ()):  # the current mask, unchanged
            logs.event("user code blocked signals in the worker; unblocked", level=logging.WARNING)
            signal.pthread_sigmask(signal.SIG_SETMASK, ())
        if any(_signal.getsignal(signum) is not handler for signum, handler in self._handlers.items()):
            logs.event("user code replaced the worker's signal handlers; restored",
                       level=logging.WARNING)
            self.install_signals()

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
        self.report_dead = (protocol.decode_item(task.item).payload, error, attempts, task.task_id)
        return outcome.dead(task, task.item, attempts, error, trace, self.spec)

    def _report_dead(self, payload: Any, error: str, attempts: int, task_id: str | None) -> None:
        """Hand a dead task to the errorHandler, once: after its outcome is recorded, under
        its own time limit, with nothing charged if it kills the worker (position -1)."""
        self.report_dead = None
        if self.cfg.error_handler is None:
            return
        self._flush(claim=False)
        self.cfg.slot.begin(REPORTING_POSITION, len(self.in_hand))
        try:
            self._call_user(self.cfg.error_handler, error_handler_limit_s(self.spec),
                            payload, error, attempts)
        except BaseException as e:  # user code: anything, SystemExit and TaskTimeout included
            logs.event("errorHandler raised", level=logging.ERROR, id=task_id or "-",
                       error=exception_text(e), traceback=_traceback_text(e))
        self.cfg.slot.end(len(self.in_hand))

    # --- Redis --------------------------------------------------------------------------

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
                if (self.stopping and stop_on_shutdown) or not parent_is(self.cfg.master_pid):
                    return None
                time.sleep(delay)  # backoff between retries, not synchronisation

    def blame_oldest(self) -> None:
        """The worker is dying of an unexpected error outside a task: have the master charge
        the oldest task it holds (index 0 of its processing list), so no element that kills
        workers outside the handler can loop uncharged either."""
        if not self.serving and (self.pending or self.in_hand):
            self.cfg.slot.begin(0, len(self.in_hand))

    # --- recycling ----------------------------------------------------------------------

    def _recycle_reason(self) -> str | None:
        if self.spec.max_tasks_per_worker and self.served >= self.spec.max_tasks_per_worker:
            return f"served {self.served} tasks (maxTasksPerWorker)"
        if self.spec.max_memory_mib and time.monotonic() >= self.next_memory_check:
            self.next_memory_check = time.monotonic() + MEMORY_CHECK_INTERVAL_S
            mib = private_memory_mib()
            if mib > self.spec.max_memory_mib:
                return f"private memory {mib:.1f} MiB > maxMemoryMiB={self.spec.max_memory_mib}"
        return None


def _nothing(signum: int, frame: FrameType | None) -> None:
    """A handler that does nothing (unlike SIG_IGN, it is not inherited across exec)."""


def _traceback_text(exc: BaseException) -> str:
    try:
        return "".join(traceback.format_exception(exc))
    except BaseException:  # a hostile exception can break formatting too
        return exception_text(exc)


_cluster_clients: dict[str, redis.Redis] = {}


def _preconnected(url: str) -> redis.Redis:
    """A client with one connection, opened now (in the master, before the fork).

    The child inherits a connected socket, so its first command costs one round trip instead
    of a connection setup whose code path dirties ~1 MiB of pages shared with the master. If
    Redis is unreachable now, the client connects lazily later.
    """
    # blocking reads last up to IDLE_WAKE_S; anything far longer means Redis is gone
    if url.startswith(("redis+cluster://", "rediss+cluster://")):
        # One Cluster client, made in the master and inherited by every fork (its per-node
        # pools see the new pid and connect afresh in the child): a new one needs a node to
        # answer right now, so a worker forked during a cluster outage would fail the master.
        if url not in _cluster_clients:
            _cluster_clients[url] = connect(url, socket_timeout=IDLE_WAKE_S + 10)
        return _cluster_clients[url]
    try:
        return connect(url, socket_timeout=IDLE_WAKE_S + 10, single_connection_client=True)
    except REDIS_ERRORS:
        return connect(url, socket_timeout=IDLE_WAKE_S + 10)


def private_memory_mib() -> float:
    """This process's private (unshared) memory in MiB, from /proc/self/smaps_rollup."""
    total_kib = 0
    with open("/proc/self/smaps_rollup", "rb") as f:
        for line in f:
            if line.startswith((b"Private_Clean:", b"Private_Dirty:")):
                total_kib += int(line.split()[1])
    return total_kib / 1024


def run_worker(worker: Worker) -> int:
    """Entry point in a freshly forked child; returns the process exit code.

    The master builds the Worker, connects it and registers it before the fork, so those
    objects sit in pages shared with the master and the child starts with a live connection.
    """
    config = worker.cfg
    worker.install_signals()
    logs.buffer_until_flush()
    try:
        worker.register()
        logs.event("worker ready", queue=config.spec.queue,
                   boot_ms=round((time.perf_counter() - worker.forked_at) * 1000, 2))
        code = worker.run()
    except BaseException:
        worker.blame_oldest()
        raise
    finally:
        worker.redis.close()
    logs.event("worker exiting", reason=ExitCode.describe(int(code)), served=worker.served,
               gave_back=worker.give_back.given_back)
    logs.flush()
    return int(code)

