"""The stale-heartbeat pitfall: after an outage longer than the heartbeat TTL (a failover),
every master's heartbeats look expired; the first master back must not recover the other
masters' live workers (their tasks would run twice)."""

from __future__ import annotations

import pytest
import redis
from helpers import manifest, wait_until
from ledger_handlers import served

from workerpool import Queue
from workerpool.protocol import HEARTBEAT_TTL_S

pytestmark = pytest.mark.slow


def test_no_master_robs_another_after_an_outage(start_pool, redis_url, r, monkeypatch):
    monkeypatch.setenv("LEDGER_URL", redis_url)
    doc = manifest("stale", queue="stale", handler="ledger_handlers:note", minWorkers=1,
                   maxWorkers=1, prefetch=1)
    pools = [start_pool(doc), start_pool({**doc, "metadata": {"name": "stale-b"}})]
    for p in pools:
        p.wait_workers(1, 0, timeout=20)
    q = Queue("stale", redis_url=redis_url)
    q.enqueue_many({"n": n, "s": HEARTBEAT_TTL_S * 2} for n in range(2))
    wait_until(lambda: r.llen("stale") == 0, 20, what="both tasks claimed")
    # every client blocks, the masters time out: an outage longer than the heartbeat TTL
    r.execute_command("CLIENT", "PAUSE", int((HEARTBEAT_TTL_S + 2) * 1000), "ALL")
    wait_until(lambda: _count(r) >= 2, 60, what="both tasks served")
    assert sorted(n for n, _ in served(r)) == [0, 1]  # each once: nobody recovered a live one
    for p in pools:
        p.assert_logs(prohibited=["recovered tasks of a vanished worker"])
        assert p.stop() == 0
    q.close()


def _count(r: redis.Redis) -> int:
    try:
        return int(r.llen("served"))
    except redis.TimeoutError:  # still paused
        return 0
