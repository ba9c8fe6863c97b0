"""One pool inside the master: its workers — fork, retire, reap, murder, scale, reload.

Its Redis side (backlog, heartbeats, recovery) is master/upkeep.py's `Upkeep`."""

from __future__ import annotations

import gc
import logging
import os
import random
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from .. import logs
from ..ledger import Ledger, exit_reason
from ..process import CLEAN_EXITS, ExitCode, KillReason, Role
from ..protocol import MasterReport, WorkerReport
from ..slots import SlotTable, SlotView
from ..spec import LIVE_FIELDS, PoolSpec
from ..target import Target
from ..worker import (
    REPORTING_POSITION,
    WorkerConfig,
    WorkerSeed,
    become_worker,
    error_handler_limit_s,
    plant,
)
from ..worker.handler import load
from .scaling import Bounds, Decision, Observed, decide
from .upkeep import Upkeep

HARD_KILL_GRACE_S = 5.0  # past taskTimeoutSeconds + this, a worker whose alarm did not work is killed
CRASH_WINDOW_S = 10.0  # a worker that dies younger than this counts toward a crash loop
CRASH_BACKOFF_FIRST_S = 0.1  # the second fork of a crash loop waits this; each later one doubles
CRASH_BACKOFF_MAX_S = 30.0


@dataclass(slots=True)
class Child:
    """A worker as the master tracks it."""

    pid: int
    role: Role
    worker_id: str
    slot: int
    started_at: float
    retiring: bool = False
    killed_for: KillReason | None = None


class Pool:
    """Keeps one WorkerPool's workers: forks, retires, reaps, kills the overdue and scales."""

    def __init__(self, spec: PoolSpec, target: Target, slots: SlotTable, master_id: str,
                 child_setup: Callable[[], None], nudge_fd: int = -1) -> None:
        self.spec = spec
        self.nudge_fd = nudge_fd  # the write end of the master's nudge pipe, for the workers
        self.target = target
        self.handler = load(spec.handler)
        self.error_handler = load(spec.error_handler, "spec.errorHandler") if spec.error_handler else None
        self.slots = slots
        self.master_id = master_id
        self.master_pid = os.getpid()
        self.child_setup = child_setup
        self.children: dict[int, Child] = {}
        self.ledger = Ledger()  # counters for /metrics that outlive the workers
        self.upkeep = Upkeep(target.redis_url, spec.queue, master_id, self.ledger)
        self.crash_streak = 0
        self.crashes = 0  # workers that died abnormally, since the master started
        self.last_crash = ""
        self.respawn_after = 0.0
        self.draining = False
        self.short_of_slots = False  # the shared slot table is full (see _within_slots)

    def live(self, role: Role) -> list[Child]:
        return [c for c in self.children.values() if c.role == role and not c.retiring]

    def spawn(self, role: Role, count: int = 1) -> None:
        """Fork `count` workers of `role`; the children never return from here.

        Every worker is prepared (client connected, registered) first and the forks follow
        back to back: whatever the master writes between two forks stays private in the
        earlier children, so nothing but the fork itself happens in between.
        """
        began = time.perf_counter()
        seeds = [self._prepare(role) for _ in range(count)]
        prepared = time.perf_counter()
        gc.freeze()  # keep the master's objects out of the children's collections: pages stay shared
        pids: list[int] = []
        try:
            for seed, _ in seeds:
                pid = seed.fork()
                if pid == 0:
                    become_worker(seed, self.child_setup)  # never returns
                pids.append(pid)
        except OSError as e:  # EAGAIN or ENOMEM: keep what was forked, try again next tick
            logs.event("fork failed", level=logging.ERROR, error=str(e))
            for _, slot in seeds[len(pids):]:
                self.slots.release(slot)
        forked = time.perf_counter()
        self.ledger.forks[role] += len(pids)
        for (seed, slot), pid in zip(seeds, pids, strict=False):
            seed.hand_over(pid)
            self.children[pid] = Child(pid, role, seed.worker_id, slot, time.monotonic())
            logs.event("worker forked", worker_role=role, worker=pid,
                       prepare_ms=round((prepared - began) * 1000 / count, 2),
                       fork_ms=round((forked - prepared) * 1000 / max(1, len(pids)), 2))
        self.upkeep.publish_soon()

    def _prepare(self, role: Role) -> tuple[WorkerSeed, int]:
        """Build, connect and register one worker in the master, ready to fork; and its slot."""
        slot = self.slots.acquire()
        worker_id = f"{self.master_id}.{slot}.{random.getrandbits(32):08x}"
        config = WorkerConfig(self.spec, role, worker_id, self.master_pid,
                              self.slots.writer(slot), self.handler, self.error_handler,
                              self.nudge_fd)
        return plant(config, self.target.redis_url), slot

    def signal_all(self, sig: signal.Signals, reason: KillReason | None = None) -> None:
        for child in self.children.values():
            if reason:
                child.killed_for = reason
            _kill(child.pid, sig)

    def retire(self, role: Role, count: int) -> None:
        """Ask `count` workers of `role` to stop after their current task; idle ones first."""
        candidates = sorted(self.live(role), key=lambda c: self.slots.read(c.slot).busy)
        for child in candidates[:count]:
            child.retiring = True
            _kill(child.pid, signal.SIGTERM)
            logs.event("worker retiring", worker_role=role, worker=child.pid)

    def on_exit(self, pid: int, status: int) -> bool:
        """A child was reaped: log, queue its tasks for recovery; True if it could not boot."""
        child = self.children.pop(pid)
        self.upkeep.publish_soon()
        seen = self.slots.read(child.slot)
        # a worker that exits while its slot says busy died inside a task, whatever its exit
        # code (user code may call os._exit(0)): that is a crash, and the task is charged
        clean = status >= 0 and status in CLEAN_EXITS and not seen.busy
        lost = seen.busy and child.killed_for is not KillReason.SHUTDOWN
        # the ledger keeps the slot's counts before the slot is reused (counters never go back)
        self.ledger.worker_exited(self.slots, child.slot, child.role,
                                  exit_reason(status, child.killed_for), lost)
        self.slots.release(child.slot)
        reason = child.killed_for or ExitCode.describe(status)
        if seen.busy and not child.killed_for and status in CLEAN_EXITS:
            reason = f"exited during a task ({reason})"
        level = logging.INFO if clean or child.killed_for is KillReason.SHUTDOWN else logging.WARNING
        logs.event("worker exited", level=level, worker_role=child.role, worker=pid,
                   reason=reason)
        charge = seen.position if lost else -1
        self.upkeep.return_tasks(child.worker_id, charge)  # if Redis is down, later ticks retry
        if not clean and child.killed_for is not KillReason.SHUTDOWN:
            self.crashes += 1
            self.last_crash = reason
            self._note_crash(child)
        # BOOT_FAILED from a worker that never started a task; the same code from user code
        # inside a task (os._exit(3)) is a crash like any other
        return status == ExitCode.BOOT_FAILED and seen.started_at == 0.0

    def _note_crash(self, child: Child) -> None:
        now = time.monotonic()
        if now - child.started_at >= CRASH_WINDOW_S:
            self.crash_streak = 0
            return
        self.crash_streak += 1
        delay = crash_backoff_s(self.crash_streak)
        self.respawn_after = now + delay
        if self.crash_streak > 1:
            logs.event("workers crash-looping, backing off", level=logging.WARNING,
                       crashes=self.crash_streak, next_fork_in_s=round(delay, 2))

    def tick(self, now: float) -> None:
        """One master tick for this pool: read Redis, kill the overdue, scale, publish."""
        self.upkeep.poll(now)
        self.murder_overdue(now)
        if not self.draining:
            self.scale(now)
        self.upkeep.publish(now, self.published, self._worker_ids)

    def _worker_ids(self) -> list[str]:
        return [c.worker_id for c in self.children.values()]

    def observe(self) -> Observed:
        views = [self.slots.read(c.slot) for c in self.children.values() if not c.retiring]
        held = sum(v.held for v in views)
        waiting = self.upkeep.backlog + held if self.upkeep.redis_ok else 0
        return Observed(len(self.live(Role.PERMANENT)), len(self.live(Role.TEMPORARY)),
                        sum(v.busy for v in views), waiting)

    def active(self) -> bool:
        """Tasks wait or run: the master then polls faster (see ACTIVE_POLL_INTERVAL_S)."""
        return self.upkeep.backlog > 0 or any(self.slots.read(c.slot).busy for c in self.children.values())

    def scale(self, now: float) -> None:
        """Fork or retire to what `decide` asks; the crash backoff holds back every fork
        (temporaries crash-loop as well)."""
        observed = self.observe()
        bounds = Bounds(self.spec.min_workers, self.spec.max_workers, self.spec.scale_up_backlog)
        d = self._within_slots(decide(observed, bounds, now >= self.respawn_after))
        if d.fork_temporary:
            logs.event("scaling up", waiting=observed.waiting, busy=observed.busy,
                       forking=d.fork_temporary)
        if d.fork_permanent:
            self.spawn(Role.PERMANENT, d.fork_permanent)
        if d.fork_temporary:
            self.spawn(Role.TEMPORARY, d.fork_temporary)
        if d.retire_permanent:
            self.retire(Role.PERMANENT, d.retire_permanent)
        if d.retire_temporary:
            self.retire(Role.TEMPORARY, d.retire_temporary)

    def _within_slots(self, d: Decision) -> Decision:
        """Fork no more than the slot table holds: pools of one master share its
        MAX_WORKERS_LIMIT slots, and each may ask for up to that many workers."""
        free = self.slots.free()
        if d.fork_permanent + d.fork_temporary <= free:
            self.short_of_slots = False
            return d
        if not self.short_of_slots:  # once per shortage, not on every tick
            logs.event("worker slots exhausted; forking fewer", level=logging.WARNING,
                       pool=self.spec.name, asked=d.fork_permanent + d.fork_temporary, free=free)
        self.short_of_slots = True
        permanent = min(d.fork_permanent, free)
        return replace(d, fork_permanent=permanent, fork_temporary=min(d.fork_temporary, free - permanent))

    def murder_overdue(self, now: float) -> None:
        """SIGKILL a worker whose task (or errorHandler, slot position -1) outlived its limit
        and the alarm did not stop it (user code that blocks or ignores SIGALRM)."""
        for child in self.children.values():
            seen = self.slots.read(child.slot)
            if not seen.busy or child.killed_for is not None:
                continue
            reporting = seen.position == REPORTING_POSITION
            limit = error_handler_limit_s(self.spec) if reporting else self.spec.task_timeout_s
            if limit and now - seen.started_at > limit + HARD_KILL_GRACE_S:
                child.killed_for = KillReason.ERROR_HANDLER_TIMEOUT if reporting else KillReason.TASK_TIMEOUT
                _kill(child.pid, signal.SIGKILL)

    def published(self) -> MasterReport:
        """The numbers `workerpool stats`, `top` and the operator read."""
        now = time.monotonic()
        workers = tuple(_worker_entry(c, self.slots.read(c.slot), now) for c in self.children.values())
        return MasterReport(self.master_id, self.spec.name, socket.gethostname(), self.master_pid,
                            self.spec.min_workers, self.spec.max_workers,
                            len(self.live(Role.PERMANENT)), len(self.live(Role.TEMPORARY)),
                            sum(1 for w in workers if w.busy), workers, self.crashes,
                            self.last_crash, time.time())

    def update(self, spec: PoolSpec) -> None:
        """Apply a changed spec (SIGHUP): sizes at once; anything else by replacing workers."""
        if spec == self.spec:
            return
        if spec.handler != self.spec.handler:
            self.handler = load(spec.handler)
        if spec.error_handler != self.spec.error_handler:
            self.error_handler = load(spec.error_handler, "spec.errorHandler") if spec.error_handler else None
        worker_level = any(getattr(spec, f) != getattr(self.spec, f)
                           for f in spec.__slots__ if f not in LIVE_FIELDS)
        self.spec = spec
        logs.event("pool reconfigured", pool=spec.name, min=spec.min_workers,
                   max=spec.max_workers, replacing_workers=worker_level)
        if worker_level:
            for role in Role:
                self.retire(role, len(self.live(role)))


def _worker_entry(child: Child, seen: SlotView, now: float) -> WorkerReport:
    """One worker as published: `task_s` is its current task's age (`workerpool top` shows it)."""
    return WorkerReport(child.pid, child.role, seen.busy,
                        round(now - seen.started_at, 1) if seen.busy else None)


def crash_backoff_s(streak: int) -> float:
    """How long the next fork waits after `streak` crashes in a row: doubling, capped.

    The exponent is capped too: 2.0 ** 1024 overflows a float (a master that had survived a
    thousand crashes would die of the thousand-and-first), and the cap is reached long before.
    """
    return min(CRASH_BACKOFF_MAX_S, CRASH_BACKOFF_FIRST_S * 2.0 ** min(max(streak - 1, 0), 16))


def _kill(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass  # already exited; the reaper will see it
