"""The master's process bookkeeping, in pytest's own process (gunicorn's tests/test_arbiter.py
style): `os.fork`, `os.kill` and `os.waitpid` are replaced at the OS boundary, so no worker
runs; the slot table and Redis are real. What a bug here breaks: a crash loop that forks
without backoff, a lost task charged no attempt, a reload that rolls workers for nothing, a
worker whose alarm failed never killed, a master that fork-loops on a handler that cannot load.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from helpers import free_port

from workerpool import protocol
from workerpool.master.pool import CRASH_BACKOFF_FIRST_S, HARD_KILL_GRACE_S, Pool
from workerpool.master.supervisor import Master
from workerpool.process import ExitCode, KillReason, Role
from workerpool.protocol import Keys, MasterReport
from workerpool.slots import SlotTable
from workerpool.spec import PoolSpec, parse_spec
from workerpool.target import Target

FAKE_PID_BASE = 4_000_000  # above any real pid (pid_max is at most 2**22): never a real process


class OS:
    """Stands in for the kernel: fork returns fresh fake pids, kill and waitpid are recorded."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.pids = itertools.count(FAKE_PID_BASE)
        self.forked: list[int] = []
        self.killed: list[tuple[int, int]] = []
        self.exits: list[tuple[int, int]] = []  # what waitpid will report, in order
        monkeypatch.setattr(os, "fork", self.fork)
        monkeypatch.setattr(os, "kill", self.kill)
        monkeypatch.setattr(os, "waitpid", self.waitpid)

    def fork(self) -> int:
        pid = next(self.pids)
        self.forked.append(pid)
        return pid

    def kill(self, pid: int, sig: int) -> None:
        assert pid >= FAKE_PID_BASE, f"a test tried to signal real pid {pid}"
        self.killed.append((pid, sig))

    def waitpid(self, pid: int, options: int) -> tuple[int, int]:
        if not self.exits:
            return 0, 0
        return self.exits.pop(0)


def exited(code: int) -> int:
    """A wait status for a normal exit with `code` (what waitpid returns; see wait(2))."""
    return (code & 0xFF) << 8


def killed_by(sig: signal.Signals) -> int:
    return int(sig)


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> OS:
    return OS(monkeypatch)


def spec_of(**fields: Any) -> PoolSpec:
    return parse_spec("life", {"handler": "handlers:record", "minWorkers": 2, "maxWorkers": 4,
                               **fields})


@pytest.fixture
def make_pool(redis_url: str, kernel: OS) -> Iterator[Any]:
    made: list[Pool] = []

    def make(**fields: Any) -> Pool:
        pool = Pool(spec_of(**fields), Target(redis_url), SlotTable(64), "test-master",
                    child_setup=lambda: None)
        made.append(pool)
        return pool

    yield make
    for pool in made:
        pool.upkeep.redis.close()


@pytest.fixture
def make_master(redis_url: str, kernel: OS) -> Iterator[Any]:
    made: list[Master] = []

    def make(url: str = redis_url, **fields: Any) -> Master:
        master = Master([(spec_of(**fields), Target(url))])
        made.append(master)
        return master

    yield make
    for master in made:
        for pool in master.pools.values():
            pool.upkeep.redis.close()


def test_scale_forks_the_permanent_workers_back_to_back(make_pool, kernel):
    pool = make_pool(minWorkers=3)
    pool.scale(now=0.0)
    assert len(kernel.forked) == 3
    assert sorted(pool.children) == kernel.forked
    assert {c.role for c in pool.children.values()} == {Role.PERMANENT}
    assert len({c.slot for c in pool.children.values()}) == 3  # one slot each
    assert pool.ledger.forks[Role.PERMANENT] == 3


def test_a_clean_idle_exit_is_not_a_crash_and_frees_the_slot(make_pool, kernel):
    pool = make_pool(minWorkers=1)
    pool.scale(now=0.0)
    (pid,) = kernel.forked
    slot = pool.children[pid].slot
    assert pool.on_exit(pid, ExitCode.IDLE) is False
    assert pool.crashes == 0 and pool.crash_streak == 0 and not pool.children
    assert pool.slots.acquire() == slot  # released, so reused first


def test_a_worker_dying_inside_a_task_is_a_crash_and_its_task_is_charged(make_pool, kernel, r):
    pool = make_pool(minWorkers=1)
    pool.scale(now=0.0)
    (pid,) = kernel.forked
    child = pool.children[pid]
    keys = Keys("life")
    r.rpush(keys.processing(child.worker_id), protocol.envelope("t1", '{"n": 1}', attempts=0))
    pool.slots.writer(child.slot).begin(0, 1)  # busy at position 0 of its processing list
    # user code called os._exit(0) inside the handler: a clean code, but the slot says busy
    assert pool.on_exit(pid, 0) is False
    assert pool.crashes == 1 and "exited during a task" in pool.last_crash
    assert r.llen(keys.processing(child.worker_id)) == 0
    (back,) = r.lrange("life", 0, -1)
    assert protocol.decode_item(back).attempts == 1  # charged: a poison task cannot loop free
    assert pool.ledger.lost[Role.PERMANENT] == 1


def test_workers_killed_for_shutdown_are_neither_crashes_nor_charged(make_pool, kernel, r):
    pool = make_pool(minWorkers=1)
    pool.scale(now=0.0)
    (pid,) = kernel.forked
    child = pool.children[pid]
    r.rpush(Keys("life").processing(child.worker_id), protocol.envelope("t1", "1", attempts=0))
    pool.slots.writer(child.slot).begin(0, 1)
    pool.signal_all(signal.SIGKILL, reason=KillReason.SHUTDOWN)
    assert kernel.killed == [(pid, signal.SIGKILL)]
    assert pool.on_exit(pid, -signal.SIGKILL) is False
    assert pool.crashes == 0
    assert protocol.decode_item(r.lindex("life", 0)).attempts == 0  # back, uncharged


def test_a_crash_loop_backs_off_doubling_and_holds_every_fork(make_pool, kernel):
    pool = make_pool(minWorkers=1, maxWorkers=3)
    delays = []
    for _ in range(4):
        pool.scale(now=pool.respawn_after)  # the backoff has passed: it forks again
        pid = kernel.forked[-1]
        pool.children[pid].started_at = time.monotonic()  # dies young: part of a crash loop
        pool.on_exit(pid, ExitCode.CRASHED)
        delays.append(pool.respawn_after - time.monotonic())
    assert pool.crash_streak == 4 and pool.crashes == 4
    first = CRASH_BACKOFF_FIRST_S
    assert delays == pytest.approx([first, 2 * first, 4 * first, 8 * first], abs=0.05)
    forks = len(kernel.forked)
    pool.scale(now=pool.respawn_after - 0.01)  # still backing off: no fork, not even a temporary
    assert len(kernel.forked) == forks


def test_a_worker_that_lived_long_resets_the_crash_streak(make_pool, kernel):
    pool = make_pool(minWorkers=1)
    pool.scale(now=0.0)
    pid = kernel.forked[-1]
    pool.crash_streak = 5
    pool.children[pid].started_at = -3600.0  # an hour old
    pool.on_exit(pid, ExitCode.CRASHED)
    assert pool.crash_streak == 0 and pool.crashes == 1


def test_boot_failure_stops_the_master_only_before_any_task(make_pool, kernel):
    pool = make_pool(minWorkers=2)
    pool.scale(now=0.0)
    first, second = kernel.forked
    assert pool.on_exit(first, ExitCode.BOOT_FAILED) is True  # could not boot: stop, don't loop
    pool.slots.writer(pool.children[second].slot).begin(0, 1)
    assert pool.on_exit(second, ExitCode.BOOT_FAILED) is False  # user code's os._exit(3) in a task


def test_the_hard_timeout_kills_only_workers_past_their_limit(make_pool, kernel):
    pool = make_pool(minWorkers=3, taskTimeoutSeconds=10)
    pool.scale(now=0.0)
    late, reporting, idle = (pool.children[pid] for pid in kernel.forked)
    pool.slots.writer(late.slot).begin(0, 0)  # in a task
    pool.slots.writer(reporting.slot).begin(-1, 0)  # in its errorHandler (same limit here)
    started = pool.slots.read(reporting.slot).started_at
    pool.murder_overdue(now=started + 10 + HARD_KILL_GRACE_S - 1)
    assert kernel.killed == []  # within the grace: the alarm may still work
    pool.murder_overdue(now=started + 10 + HARD_KILL_GRACE_S + 1)
    assert sorted(kernel.killed) == sorted([(late.pid, signal.SIGKILL), (reporting.pid, signal.SIGKILL)])
    assert late.killed_for is KillReason.TASK_TIMEOUT
    assert reporting.killed_for is KillReason.ERROR_HANDLER_TIMEOUT
    assert idle.killed_for is None
    pool.murder_overdue(now=started + 3600)
    assert len(kernel.killed) == 2  # killed once, not on every tick


def test_reload_of_sizes_keeps_the_workers_and_other_changes_roll_them(make_pool, kernel):
    pool = make_pool(minWorkers=2)
    pool.scale(now=0.0)
    pool.update(spec_of(minWorkers=2, maxWorkers=8))  # a size: applied at once
    assert kernel.killed == [] and pool.spec.max_workers == 8
    pool.update(spec_of(minWorkers=2, maxWorkers=8, prefetch=1))  # the workers' own config
    assert sorted(kernel.killed) == sorted((pid, signal.SIGTERM) for pid in kernel.forked)
    assert all(c.retiring for c in pool.children.values())
    pool.scale(now=0.0)
    assert len(kernel.forked) == 4  # replacements forked while the old ones finish


def test_retire_takes_idle_workers_first(make_pool, kernel):
    pool = make_pool(minWorkers=3)
    pool.scale(now=0.0)
    busy = pool.children[kernel.forked[0]]
    pool.slots.writer(busy.slot).begin(0, 0)
    pool.retire(Role.PERMANENT, 2)
    assert busy.pid not in {pid for pid, _ in kernel.killed} and len(kernel.killed) == 2


def test_the_published_numbers_count_roles_and_busy_workers(make_pool, kernel):
    pool = make_pool(minWorkers=2)
    pool.scale(now=0.0)
    pool.slots.writer(pool.children[kernel.forked[0]].slot).begin(0, 0)
    numbers = MasterReport.from_json(pool.published().to_json())  # as the readers see it
    assert (numbers.permanent, numbers.temporary, numbers.busy) == (2, 0, 1)
    assert sorted(w.pid for w in numbers.workers) == kernel.forked


def test_pools_sharing_a_full_slot_table_fork_fewer_instead_of_failing(redis_url, kernel):
    slots = SlotTable(3)
    first, second = (Pool(spec_of(minWorkers=2), Target(redis_url), slots, "test-master",
                          child_setup=lambda: None) for _ in range(2))
    try:
        first.scale(now=0.0)
        second.scale(now=0.0)
        assert (len(first.children), len(second.children)) == (2, 1)
        second.scale(now=0.0)  # still full: nothing more, no error
        first.on_exit(next(iter(first.children)), ExitCode.IDLE)
        second.scale(now=0.0)  # a slot came free
        assert len(second.children) == 2
    finally:
        for pool in (first, second):
            pool.upkeep.redis.close()


def test_the_master_reaps_every_exit_and_stops_on_a_boot_failure(make_master, kernel):
    master = make_master(minWorkers=2)
    pool = master.pools["life"]
    pool.scale(now=0.0)
    first, second = kernel.forked
    kernel.exits = [(first, exited(ExitCode.IDLE)), (123, exited(0)),  # 123: not ours
                    (second, exited(ExitCode.BOOT_FAILED))]
    master._reap()
    assert not pool.children and kernel.exits == []
    assert master.stopping and master.exit_code == ExitCode.CRASHED
    assert pool.draining  # no more forks while it stops


def test_a_second_stop_kills_at_once(make_master, kernel):
    master = make_master(minWorkers=1)
    pool = master.pools["life"]
    pool.scale(now=0.0)
    (pid,) = kernel.forked
    master.stop()
    assert kernel.killed == [(pid, signal.SIGTERM)]
    master.stop()
    assert kernel.killed[-1] == (pid, signal.SIGKILL)
    assert pool.children[pid].killed_for is KillReason.SHUTDOWN


def test_a_stop_signal_ends_the_wait_for_an_unreachable_redis_at_exit(make_master, monkeypatch):
    master = make_master(f"redis://127.0.0.1:{free_port()}/0", minWorkers=1)
    pool = master.pools["life"]
    pool.upkeep.recoveries.append(("gone-worker", -1))  # tasks to return; Redis is down
    waits: list[float] = []

    def wait(timeout: float) -> list[int]:
        waits.append(timeout)
        return [signal.SIGTERM]  # the user presses Ctrl+C again

    monkeypatch.setattr(master, "_wait", wait)
    master.adopted.note_preexisting()  # (run() does this: the test's redis-server is not ours)
    master._finish()
    assert len(waits) == 1  # not RECOVERY_PATIENCE_S / RECOVERY_RETRY_S tries
    assert pool.upkeep.recoveries == [("gone-worker", -1)]  # left for the next master


def test_redis_clients_are_real(redis_url):
    """The fixtures above talk to the test run's redis-server: nothing here is mocked but the OS."""
    assert redis.Redis.from_url(redis_url).ping()
