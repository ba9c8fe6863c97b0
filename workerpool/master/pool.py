"""One pool inside the master: its workers, its Redis upkeep and its scaling."""

from __future__ import annotations

import gc
import json
import logging
import os
import random
import re
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

from .. import logs, protocol
from ..ledger import Ledger, exit_reason
from ..process import CLEAN_EXITS, ExitCode, KillReason, Role
from ..protocol import Keys
from ..queue import connect
from ..redis_errors import REDIS_ERRORS, Trouble, drop_stale_connections, is_transient
from ..slots import SlotTable, SlotView
from ..spec import LIVE_FIELDS, PoolSpec
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

HARD_KILL_GRACE_S = 5.0  # past taskTimeoutSeconds + this, a worker whose alarm did not work is killed
CRASH_WINDOW_S = 10.0  # a worker that dies younger than this counts toward a crash loop
CRASH_BACKOFF_FIRST_S = 0.1  # the second fork of a crash loop waits this; each later one doubles
CRASH_BACKOFF_MAX_S = 30.0
ORPHAN_SWEEP_INTERVAL_S = 30.0  # how often processing lists with no live owner are looked for


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


@dataclass(slots=True)
class Upkeep:
    """Redis-side state of a pool that survives an outage."""

    backlog: int = 0
    redis_ok: bool = True
    next_heartbeat: float = 0.0
    next_sweep: float = 0.0
    recoveries: list[tuple[str, int]] = field(default_factory=list)
    # After an outage (a failover), other masters' heartbeats look expired until they too have
    # reconnected: their workers are alive, so nothing is recovered before this (monotonic).
    trust_expiry_at: float = 0.0
    # one backoff per step: a key a user broke (WRONGTYPE on the queue) stops only its step
    trouble: dict[str, Trouble] = field(default_factory=dict)
    retry_at: dict[str, float] = field(default_factory=dict)


class Pool:
    """Keeps one WorkerPool's workers: forks, retires, reaps, recovers and publishes."""

    def __init__(self, spec: PoolSpec, redis_url: str, slots: SlotTable, master_id: str,
                 child_setup: Callable[[], None], nudge_fd: int = -1) -> None:
        self.spec = spec
        self.nudge_fd = nudge_fd  # the write end of the master's nudge pipe, for the workers
        self.redis_url = redis_url
        self.handler = load(spec.handler)
        self.error_handler = load(spec.error_handler, "spec.errorHandler") if spec.error_handler else None
        self.keys = Keys(spec.queue)
        self.slots = slots
        self.master_id = master_id
        self.master_pid = os.getpid()
        self.child_setup = child_setup
        self.children: dict[int, Child] = {}
        self.redis = connect(redis_url, socket_timeout=2.0)
        self.promote = self.redis.register_script(protocol.PROMOTE)
        self.recover = self.redis.register_script(protocol.RECOVER)
        self.upkeep = Upkeep()
        self.crash_streak = 0
        self.crashes = 0  # workers that died abnormally, since the master started
        self.last_crash = ""
        self.respawn_after = 0.0
        self.draining = False
        self.ledger = Ledger()  # counters for /metrics that outlive the workers

    # --- workers ------------------------------------------------------------------------

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
                    self._child_main(seed)
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
        self.upkeep.next_heartbeat = 0.0  # publish the new numbers on the next tick

    def _prepare(self, role: Role) -> tuple[WorkerSeed, int]:
        """Build, connect and register one worker in the master, ready to fork; and its slot."""
        slot = self.slots.acquire()
        worker_id = f"{self.master_id}.{slot}.{random.getrandbits(32):08x}"
        config = WorkerConfig(self.spec, role, worker_id, self.master_pid,
                              self.slots.writer(slot), self.handler, self.error_handler,
                              self.nudge_fd)
        return plant(config, self.redis_url), slot

    def _child_main(self, seed: WorkerSeed) -> NoReturn:
        """The forked child: serve as `seed`'s worker, leaving through os._exit, never returning."""
        become_worker(seed, self.child_setup)

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
        self.upkeep.next_heartbeat = 0.0
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
        self.upkeep.recoveries.append((child.worker_id, charge))
        self.try_recover_pending()  # if Redis is down, the next ticks retry
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

    # --- the tick -----------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Poll Redis, then scale; an unreachable Redis only pauses the temporaries."""
        self._poll(now)
        self._enforce_hard_timeouts(now)
        if not self.draining:
            seen = self.observe()
            # the crash backoff holds back every fork: temporaries crash-loop as well
            self.apply(decide(seen, self._bounds(), now >= self.respawn_after), seen)

    def observe(self) -> Observed:
        views = [self.slots.read(c.slot) for c in self.children.values() if not c.retiring]
        held = sum(v.held for v in views)
        waiting = self.upkeep.backlog + held if self.upkeep.redis_ok else 0
        return Observed(len(self.live(Role.PERMANENT)), len(self.live(Role.TEMPORARY)),
                        sum(v.busy for v in views), waiting)

    def active(self) -> bool:
        """Tasks wait or run: the master then polls faster (see ACTIVE_POLL_INTERVAL_S)."""
        return self.upkeep.backlog > 0 or any(self.slots.read(c.slot).busy for c in self.children.values())

    def _bounds(self) -> Bounds:
        return Bounds(self.spec.min_workers, self.spec.max_workers, self.spec.scale_up_backlog)

    def apply(self, d: Decision, seen: Observed) -> None:
        if d.fork_temporary:
            logs.event("scaling up", waiting=seen.waiting, busy=seen.busy,
                       forking=d.fork_temporary)
        if d.fork_permanent:
            self.spawn(Role.PERMANENT, d.fork_permanent)
        if d.fork_temporary:
            self.spawn(Role.TEMPORARY, d.fork_temporary)
        if d.retire_permanent:
            self.retire(Role.PERMANENT, d.retire_permanent)
        if d.retire_temporary:
            self.retire(Role.TEMPORARY, d.retire_temporary)

    def _enforce_hard_timeouts(self, now: float) -> None:
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

    def _poll(self, now: float) -> None:
        """The Redis upkeep of one tick, step by step; a failing step backs off on its own."""
        steps: list[tuple[str, str, Callable[[], None]]] = [("poll", self.spec.queue, self._read_backlog)]
        if now >= self.upkeep.next_heartbeat:
            steps.append(("heartbeat", self.keys.alive, self.heartbeat))
        if now >= self.upkeep.next_sweep:
            steps.append(("sweep", self.keys.processing("*"), self.sweep_orphans))
        if self.upkeep.recoveries:
            steps.append(("recover", self.spec.queue, self._recover_pending))
        for name, key, step in steps:
            if not self._run_step(name, key, step, now):
                break
        else:
            self._redis_ok()
        if now >= self.upkeep.next_heartbeat:
            self.upkeep.next_heartbeat = now + protocol.HEARTBEAT_INTERVAL_S
        if now >= self.upkeep.next_sweep:
            self.upkeep.next_sweep = now + ORPHAN_SWEEP_INTERVAL_S

    def _read_backlog(self) -> None:
        self.upkeep.backlog = int(self.promote([self.keys.delayed, self.spec.queue],
                                               [protocol.now_ms(), protocol.PROMOTE_BATCH]))

    def _run_step(self, name: str, key: str, step: Callable[[], None], now: float) -> bool:
        """Run one upkeep step unless it is backing off; False if Redis is unreachable."""
        if now < self.upkeep.retry_at.get(name, 0.0):
            return True
        trouble = self.upkeep.trouble.setdefault(name, Trouble(name))
        try:
            step()
        except Exception as e:  # a Redis error, or a reply we did not expect (never fatal)
            self.upkeep.retry_at[name] = now + trouble.failed(e, _command_of(e, name), key)
            drop_stale_connections(self.redis, e)  # READONLY: find the new primary
            self.ledger.redis_error(e)
            if is_transient(e):
                self._redis_failed()
                return False
            return True
        trouble.succeeded()
        return True

    def _redis_ok(self) -> None:
        if not self.upkeep.redis_ok:
            logs.event("redis is back; scale-up resumes", queue=self.spec.queue)
            self.upkeep.trust_expiry_at = time.monotonic() + protocol.HEARTBEAT_TTL_S
        self.upkeep.redis_ok = True

    def _redis_failed(self) -> None:
        if self.upkeep.redis_ok:
            logs.event("redis unavailable; keeping the workers, pausing scale-up",
                       level=logging.WARNING, queue=self.spec.queue)
        self.upkeep.redis_ok = False

    # --- heartbeats, publishing, recovery -------------------------------------------------

    def heartbeat(self) -> None:
        """Refresh our entries in Keys.alive, publish our numbers, recover the expired."""
        now = protocol.now_ms()
        deadline = now + int(protocol.HEARTBEAT_TTL_S * 1000)
        members = {f"m:{self.master_id}": deadline}
        members.update({f"w:{c.worker_id}": deadline for c in self.children.values()})
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(self.keys.alive, members)
        pipe.hset(self.keys.masters, self.master_id, json.dumps(self.published()))
        pipe.zrangebyscore(self.keys.alive, "-inf", now)
        expired = pipe.execute()[2]
        if self._expiry_trusted():
            for member in expired:
                self._recover_expired(member)

    def _expiry_trusted(self) -> bool:
        """False during an outage and for one heartbeat TTL after it (see Upkeep)."""
        return self.upkeep.redis_ok and time.monotonic() >= self.upkeep.trust_expiry_at

    def sweep_orphans(self) -> None:
        """Recover processing lists whose worker is in no master's heartbeats at all.

        The safety net behind heartbeat expiry: whatever left a list behind (a crash at the
        worst moment, a flushed heartbeat set), its tasks go back to the queue.
        """
        if not self._expiry_trusted():
            return
        prefix = self.keys.processing("")
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + "*"  # queue names may hold glob characters
        for key in self.redis.scan_iter(match=pattern, count=500):
            member = b"w:" + key[len(prefix.encode()):]
            if self.redis.zscore(self.keys.alive, member) is None:
                self._recover_expired(member)

    def _recover_expired(self, member: bytes) -> None:
        """Recover what a vanished worker held, or forget a vanished master.

        Bytes throughout: a name written by hand need not be UTF-8, and must neither stop the
        recovery of the others nor stay behind."""
        kind, _, ident = member.partition(b":")
        if kind == b"w":
            processing = self.keys.processing("").encode() + ident
            moved = self.recover([processing, self.spec.queue, self.keys.seq],
                                 [0, protocol.ENVELOPE_PREFIX])
            if moved:
                logs.event("recovered tasks of a vanished worker", level=logging.WARNING,
                           worker_id=ident.decode("utf-8", "backslashreplace"), tasks=moved)
        else:
            self.redis.hdel(self.keys.masters, ident)
        self.redis.zrem(self.keys.alive, member)

    def _recover_pending(self) -> None:
        while self.upkeep.recoveries:
            worker_id, charge = self.upkeep.recoveries[0]
            moved = self.recover([self.keys.processing(worker_id), self.spec.queue, self.keys.seq],
                                 [charge, protocol.ENVELOPE_PREFIX])
            self.redis.zrem(self.keys.alive, f"w:{worker_id}")
            self.upkeep.recoveries.pop(0)
            if moved:
                logs.event("returned tasks to the queue", worker_id=worker_id, tasks=moved,
                           charged_attempt=charge >= 0)

    def try_recover_pending(self) -> bool:
        """Recover what exited workers held; False if Redis did not take it."""
        return self._run_step("recover", self.spec.queue, self._recover_pending, time.monotonic()) and \
            not self.upkeep.recoveries

    def withdraw(self) -> None:
        """Remove this master's entry (clean stop), so `stats` stops showing it at once."""
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.zrem(self.keys.alive, f"m:{self.master_id}")
            pipe.hdel(self.keys.masters, self.master_id)
            pipe.execute()
        except REDIS_ERRORS:
            pass  # the entry expires by itself

    def published(self) -> dict[str, object]:
        """The numbers `workerpool stats` and the operator read."""
        now = time.monotonic()
        workers = [_worker_entry(c, self.slots.read(c.slot), now) for c in self.children.values()]
        return {"master": self.master_id, "pool": self.spec.name, "host": socket.gethostname(),
                "pid": self.master_pid, "min": self.spec.min_workers, "max": self.spec.max_workers,
                "permanent": len(self.live(Role.PERMANENT)), "temporary": len(self.live(Role.TEMPORARY)),
                "busy": sum(1 for w in workers if w["busy"]), "workers": workers,
                "crashes": self.crashes, "last_crash": self.last_crash,
                "updated_at": time.time()}

    # --- reload -------------------------------------------------------------------------

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


def _worker_entry(child: Child, seen: SlotView, now: float) -> dict[str, object]:
    """One worker as published: `task_s` is its current task's age (`workerpool top` shows it)."""
    return {"pid": child.pid, "role": child.role, "busy": seen.busy,
            "task_s": round(now - seen.started_at, 1) if seen.busy else None}


def crash_backoff_s(streak: int) -> float:
    """How long the next fork waits after `streak` crashes in a row: doubling, capped.

    The exponent is capped too: 2.0 ** 1024 overflows a float (a master that had survived a
    thousand crashes would die of the thousand-and-first), and the cap is reached long before.
    """
    return min(CRASH_BACKOFF_MAX_S, CRASH_BACKOFF_FIRST_S * 2.0 ** min(max(streak - 1, 0), 16))


def _command_of(exc: Exception, step: str) -> str:
    """The command that failed, as redis-py names it inside a pipeline, else the step's."""
    match = re.match(r"Command # \d+ \((\S+)", str(exc))
    commands = {"poll": "PROMOTE", "heartbeat": "ZADD+HSET+ZRANGEBYSCORE",
                "sweep": "SCAN+ZSCORE+RECOVER", "recover": "RECOVER"}
    return match.group(1) if match else commands.get(step, step)


def _kill(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass  # already exited; the reaper will see it
