"""Sentinel: a pool rides out a failover (kill -9 of the primary, or a switchover that makes
the old primary answer READONLY) and loses nothing; the figures are printed (pytest -s)."""

from __future__ import annotations

import itertools
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from helpers import ANY, manifest, wait_until
from ledger_handlers import served
from topologies import SentinelSet

from workerpool import Queue

pytestmark = pytest.mark.slow
TASKS = 2000


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    if not shutil.which("redis-sentinel"):
        if os.environ.get("CI") == "true":
            pytest.fail("redis-sentinel is missing in CI")
        pytest.skip("redis-sentinel is not installed")
    topology = SentinelSet(tmp_path / "sentinel")
    try:
        yield topology.start()
    finally:
        topology.stop()


def _enqueue_replicated(sentinels: SentinelSet, n: int, s: float) -> None:
    q = Queue("failover", redis_url=sentinels.url)
    q.enqueue_many({"n": i, "s": s} for i in range(n))
    q.close()
    # the test's own tasks must reach the replicas: an enqueue lost in the failover would be
    # the producer's loss (README: WAIT), not the pool's
    primary = sentinels.primary.client()
    assert primary.wait(2, 5000) == 2
    primary.close()


def test_kill9_of_the_primary_mid_drain_loses_nothing(sentinels, ledger, start_pool):
    """Two masters (two pools on one queue), 2,000 tasks, kill -9 of the primary mid-drain:
    every task is served, neither master exits, and neither recovers the other's live workers
    from the heartbeats the failover made look stale."""
    doc = manifest("failover", queue="failover", handler="ledger_handlers:note", minWorkers=3, maxWorkers=3,
                   prefetch=4)
    pools = [start_pool(doc, url=sentinels.url),
             start_pool({**doc, "metadata": {"name": "failover-b"}}, url=sentinels.url)]
    _enqueue_replicated(sentinels, TASKS, 0.02)
    wait_until(lambda: ledger.llen("served") >= 300, 60, what="300 tasks served before the kill")
    killed_at = time.time()
    sentinels.primary.kill()
    old_port = sentinels.primary.port
    wait_until(lambda: sentinels.current_primary_port() != old_port, 30, what="a replica promoted")
    promoted_at = time.time()
    wait_until(lambda: {n for n, _ in served(ledger)} >= set(range(TASKS)), 120,
               what="every task served after the failover")
    assert all(p.proc.poll() is None for p in pools), "a master exited"
    notes = served(ledger)
    numbers = [n for n, _ in notes]
    lost, duplicated = TASKS - len(set(numbers)), len(numbers) - len(set(numbers))
    resumed_at = _resumed_after(sorted(t for _, t in notes), killed_at)
    print(f"\nsentinel kill -9: lost {lost}, duplicated {duplicated}, promoted after "
          f"{promoted_at - killed_at:.2f} s, serving resumed {resumed_at - killed_at:.2f} s "
          f"after the kill")
    assert lost == 0
    for p in pools:
        p.assert_logs(prohibited=["recovered tasks of a vanished worker", {"traceback": ANY}])


def test_switchover_readonly_old_primary_is_left(sentinels, ledger, start_pool):
    """SENTINEL FAILOVER demotes a live primary: connections to it get READONLY. The pool must
    reconnect to the new primary (not loop on READONLY) and serve what comes after."""
    pool = start_pool(manifest("failover", handler="ledger_handlers:note", minWorkers=2,
                               maxWorkers=2), url=sentinels.url)
    _enqueue_replicated(sentinels, 50, 0)
    wait_until(lambda: ledger.llen("served") >= 50, 30, what="the first 50 served")
    old_port = sentinels.primary.port
    sentinel = sentinels.sentinels[0].client()
    sentinel.execute_command("SENTINEL", "FAILOVER", sentinels.name)
    wait_until(lambda: sentinels.current_primary_port() != old_port, 30, what="the switchover")
    wait_until(lambda: sentinels.primary.client().info("replication")["role"] == "slave", 30,
               what="the old primary to be a replica")
    q = Queue("failover", redis_url=sentinels.url)
    wait_until(lambda: _enqueued(q, 50), 30, what="an enqueue on the new primary")
    wait_until(lambda: {n for n, _ in served(ledger)} >= set(range(100)), 60,
               what="the tasks enqueued after the switchover served; log:\n" + pool.log()[-3000:])
    assert pool.proc.poll() is None
    assert q.stats()["processed"] >= 50  # the master publishes on the new primary
    q.close()
    sentinel.close()


def _enqueued(q: Queue, start: int) -> bool:
    try:
        q.enqueue_many({"n": i, "s": 0} for i in range(start, start + 50))
        return True
    except redis.RedisError:  # the client has not found the new primary yet
        return False


def _resumed_after(times: list[float], killed_at: float) -> float:
    """The time serving resumed after the kill: the end of the longest pause after it."""
    after = [t for t in times if t >= killed_at - 0.5]
    gaps = [(b - a, b) for a, b in itertools.pairwise(after)]
    return max(gaps)[1] if gaps else killed_at
