"""The master: one single-threaded loop — wait → signals → reap → scale → publish.

Signal handlers only wake the loop (master/wakeup.py); all work happens in the loop, never
inside a handler.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import time
from collections.abc import Callable

from .. import logs
from ..errors import WorkerPoolError
from ..metrics import registry_for
from ..metrics_server import MetricsServer
from ..process import ExitCode, KillReason, become_subreaper, set_title
from ..redis_errors import one_line
from ..slots import SlotTable
from ..spec import PoolSpec
from ..target import Target
from .adopted import Adopted
from .pool import Pool
from .wakeup import Wakeup

POLL_INTERVAL_S = 0.1  # how often an idle pool's backlog is read: a burst is seen within this
# ... and a busy one's: tasks that wait behind long ones get a new worker this much sooner
# (short-task pickup in a queue mixing 1 ms and 1 s tasks), for ~50 cheap LLENs a second
ACTIVE_POLL_INTERVAL_S = 0.02
RECOVERY_PATIENCE_S = 5.0  # at exit, how long to retry returning tasks to an unreachable Redis
RECOVERY_RETRY_S = 0.5  # between those retries: ten tries in the patience, not a busy loop
# a stop signal while the last tasks wait for an unreachable Redis: stop waiting
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT}


class Master:
    """Supervises the pools of one process. `run()` returns the process exit code."""

    def __init__(self, pools: list[tuple[PoolSpec, Target]],
                 reload: Callable[[], list[tuple[PoolSpec, Target]]] | None = None,
                 metrics_address: str | None = None) -> None:
        self.master_id = f"{socket.gethostname()}-{os.getpid()}-{random.getrandbits(16):04x}"
        self.slots = SlotTable()
        self.wakeup = Wakeup()
        self.nudged = False  # a worker got work while idle: tick now (see _loop)
        self.pools = {spec.name: self._new_pool(spec, target) for spec, target in pools}
        self.retiring: list[Pool] = []  # pools replaced or removed on reload, draining
        self.reload_specs = reload
        self.metrics = (MetricsServer(metrics_address, registry_for(self._all_pools))
                        if metrics_address else None)  # /metrics, served from this loop
        self.stopping = False
        self.deadline = 0.0
        self.exit_code = 0
        self.failed = False  # the last-resort guard caught an error: draining without ticks
        self.adopted = Adopted()
        self.dispatch: dict[int, Callable[[], None]] = {
            signal.SIGTERM: self.stop, signal.SIGINT: self.stop, signal.SIGQUIT: self.kill_now,
            signal.SIGHUP: self.reload, signal.SIGCHLD: lambda: None,
        }

    def _new_pool(self, spec: PoolSpec, target: Target) -> Pool:
        return Pool(spec, target, self.slots, self.master_id, self._child_setup,
                    self.wakeup.nudge_fd)

    def _all_pools(self) -> list[Pool]:
        return [*self.pools.values(), *self.retiring]

    def _child_setup(self) -> None:
        """Undo the master's signal plumbing and close its files in a freshly forked worker."""
        self.wakeup.undo_in_child()
        if self.metrics:
            self.metrics.close()  # the listening port is the master's alone

    def _wait(self, timeout: float) -> list[int]:
        """Sleep until a signal, a nudge or a scrape arrives or `timeout` passes; serve the
        scrapes; return the signals received."""
        scrapes = self.metrics.fds() if self.metrics else []
        signals, ready, nudged = self.wakeup.wait(timeout, scrapes)
        if self.metrics:
            self.metrics.serve(ready)
        self.nudged = self.nudged or nudged
        return signals

    def run(self) -> int:
        self.wakeup.install()
        self.adopted.note_preexisting()
        become_subreaper()  # orphans of our workers (a handler's subprocesses) are ours to reap
        set_title("master pool=" + ",".join(self.pools))
        logs.event("master started", pools=",".join(self.pools), master_id=self.master_id)
        try:
            self._loop()
        except Exception as e:  # the last-resort guard (gunicorn's arbiter has the same)
            self._failed(e)
        self._finish()
        return self.exit_code

    def _loop(self) -> None:
        """wait → signals → reap → scale (or drain), until every worker is gone."""
        last_tick = 0.0
        while True:
            # a busy pool is polled every 20 ms, an idle one every 100 ms unless a worker
            # nudges (work arrived): then at once, but never more often than every 20 ms
            busy = self.nudged or any(pool.active() for pool in self._all_pools())
            interval = ACTIVE_POLL_INTERVAL_S if busy else POLL_INTERVAL_S
            signals = self._wait(max(0.0, last_tick + interval - time.monotonic()))
            for sig in signals:
                self.dispatch.get(sig, lambda: None)()
            self._reap()
            if self.stopping:
                if self._drain_step():
                    return
                continue
            now = time.monotonic()
            due = ACTIVE_POLL_INTERVAL_S if self.nudged or busy else POLL_INTERVAL_S
            if not signals and now - last_tick < due:
                continue  # woken by a scrape, or a nudge within 20 ms of the last tick
            last_tick, self.nudged = now, False
            for pool in self._all_pools():
                pool.tick(now)
            self._drop_drained_pools()

    def _failed(self, e: Exception) -> None:
        """Something truly unexpected: drain the workers, then exit non-zero with the reason."""
        logs.event("master failed; draining the workers", level=logging.CRITICAL, error=one_line(e))
        logs.event("master failure", level=logging.DEBUG, exc_info=True)
        self.exit_code = ExitCode.CRASHED
        self.failed = True  # the drain keeps away from what failed: no more pool ticks
        try:
            if not self.stopping:
                self.stop()
            self._loop()
        except Exception as again:  # the drain itself fails: stop the workers at once
            logs.event("drain failed; killing the workers", level=logging.CRITICAL,
                       error=one_line(again))
            self.kill_now()
            while self._count():
                self._wait(POLL_INTERVAL_S)
                self._reap()

    def _reap(self) -> None:
        """Collect every exited child; tolerate children we did not fork (we may be PID 1)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            pool = next((p for p in self._all_pools() if pid in p.children), None)
            if pool is None:
                logs.event("reaped a process we did not start", level=logging.DEBUG,
                           child=pid, status=code)
            elif pool.on_exit(pid, code) and not self.stopping:
                logs.event("a worker could not boot; stopping the master", level=logging.CRITICAL,
                           pool=pool.spec.name)
                self.exit_code = ExitCode.CRASHED
                self.stop()

    def stop(self) -> None:
        """First SIGTERM/SIGINT: drain. A second one: stop the workers at once."""
        if self.stopping:
            self.kill_now()
            return
        self.stopping = True
        grace = max((p.spec.shutdown_grace_s for p in self._all_pools()), default=0.0)
        self.deadline = time.monotonic() + grace
        logs.event("master stopping: workers finish their current task",
                   grace_s=grace, workers=self._count())
        for pool in self._all_pools():
            pool.draining = True
            pool.signal_all(signal.SIGTERM)

    def kill_now(self) -> None:
        """Kill every worker; their tasks go back to the queue uncharged."""
        self.stopping = True
        self.deadline = 0.0
        if self._count():
            logs.event("killing workers now", level=logging.WARNING, workers=self._count())
        for pool in self._all_pools():
            pool.draining = True
            pool.signal_all(signal.SIGKILL, reason=KillReason.SHUTDOWN)

    def _drain_step(self) -> bool:
        """One loop turn while stopping; True when every worker is gone."""
        if self._count() == 0:
            return True
        if time.monotonic() >= self.deadline and self.deadline:
            logs.event("grace period over", level=logging.WARNING, workers=self._count())
            self.kill_now()
        if not self.failed:
            for pool in self._all_pools():
                pool.tick(time.monotonic())  # keep heartbeats and recoveries going
        return False

    def _finish(self) -> None:
        """Return the last tasks to the queue, withdraw from Redis, log the exit."""
        give_up = time.monotonic() + RECOVERY_PATIENCE_S
        for pool in self._all_pools():
            while not pool.upkeep.try_recover_pending() and time.monotonic() < give_up:
                if set(self._wait(RECOVERY_RETRY_S)) & _STOP_SIGNALS:
                    give_up = 0.0  # told again to stop: leave the rest to the next master
            if pool.upkeep.recoveries:
                logs.event("could not return tasks; the next master recovers them",
                           level=logging.ERROR, workers=len(pool.upkeep.recoveries))
            pool.upkeep.withdraw()
        self.adopted.stop(self._wait, self._reap, POLL_INTERVAL_S / 2)
        if self.metrics:
            self.metrics.shutdown()
        logs.event("master exiting", code=int(self.exit_code))

    def _count(self) -> int:
        return sum(len(p.children) for p in self._all_pools())

    def reload(self) -> None:
        """SIGHUP: re-read the manifests. Sizes apply at once; other changes roll the workers;
        a pool whose queue or Redis changed, or that left the file, drains and a new one starts."""
        if self.reload_specs is None or self.stopping:
            return
        try:
            pools = {spec.name: (spec, target) for spec, target in self.reload_specs()}
        except WorkerPoolError as e:
            logs.event("reload failed; keeping the running configuration", level=logging.ERROR,
                       error=str(e))
            return
        for name in [n for n in self.pools if n not in pools]:
            self._retire_pool(self.pools.pop(name))
        for name, (spec, target) in pools.items():
            try:
                self._reload_pool(name, spec, target)
            except WorkerPoolError as e:
                logs.event("reload of a pool failed", level=logging.ERROR, pool=name, error=str(e))

    def _reload_pool(self, name: str, spec: PoolSpec, target: Target) -> None:
        pool = self.pools.get(name)
        if pool and (pool.spec.queue, pool.target) == (spec.queue, target):
            pool.update(spec)
            return
        fresh = self._new_pool(spec, target)  # imports the handler: fails before anything changes
        if pool:
            self._retire_pool(pool)
        self.pools[name] = fresh
        logs.event("pool started on reload", pool=name, queue=spec.queue)

    def _retire_pool(self, pool: Pool) -> None:
        """Drain a pool that the file no longer describes; it is dropped once empty."""
        logs.event("pool draining on reload", pool=pool.spec.name, queue=pool.spec.queue,
                   workers=len(pool.children))
        pool.draining = True
        pool.signal_all(signal.SIGTERM)
        self.retiring.append(pool)

    def _drop_drained_pools(self) -> None:
        for pool in [p for p in self.retiring if not p.children]:
            if pool.upkeep.try_recover_pending():
                pool.upkeep.withdraw()
                self.retiring.remove(pool)
