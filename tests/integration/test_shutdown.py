"""SIGTERM/SIGINT drain the workers; a second signal or the grace period stops them now."""

from __future__ import annotations

import json
import signal
import time

from helpers import RedisServer, manifest, wait_until

from workerpool import Queue


def test_sigterm_lets_the_current_task_finish(start_pool, redis_url, r):
    pool = start_pool(manifest("drain", handler="handlers:record", minWorkers=2, maxWorkers=2))
    pool.wait_workers(2, 0)
    q = Queue("drain", redis_url=redis_url)
    q.enqueue({"s": 1.0, "n": 1, "tag": "drain"})
    wait_until(lambda: r.llen("started:drain") == 1, 10, what="the task to start")
    assert pool.stop(timeout=15) == 0  # one SIGTERM
    assert [json.loads(x)["n"] for x in r.lrange("served:drain", 0, -1)] == [1]
    log = pool.log()
    assert log.count("reason=stopped") >= 4  # each worker says it, and the master logs each exit
    assert "master exiting code=0" in log
    assert q.stats()["masters"] == []


def test_second_ctrl_c_stops_now_and_returns_the_task(start_pool, redis_url, r):
    pool = start_pool(manifest("cc", handler="handlers:sleep_forever", minWorkers=1, maxWorkers=1))
    q = Queue("cc", redis_url=redis_url)
    q.enqueue("long")
    wait_until(lambda: r.llen("started") == 1, 10, what="the task to start")
    pool.signal(signal.SIGINT)
    wait_until(lambda: "master stopping" in pool.log(), 5, what="the drain to begin")
    began = time.monotonic()
    pool.signal(signal.SIGINT)
    assert pool.stop(timeout=10) == 0
    assert time.monotonic() - began < 5
    [item] = r.lrange("cc", 0, -1)
    assert json.loads(item)["attempts"] == 0  # returned uncharged: the stop was ours


def test_grace_period_expiry_kills_and_returns_the_task(start_pool, redis_url, r):
    pool = start_pool(manifest("grace", handler="handlers:sleep_forever", minWorkers=1,
                               maxWorkers=1, shutdownGraceSeconds=0.5))
    q = Queue("grace", redis_url=redis_url)
    q.enqueue("long")
    wait_until(lambda: r.llen("started") == 1, 10, what="the task to start")
    assert pool.stop(timeout=10) == 0  # one SIGTERM
    assert "grace period over" in pool.log()
    assert q.backlog() == 1 and q.stats()["in_flight"] == 0


def test_redis_outage_is_ridden_out(start_pool, redis_server, tmp_path):
    own = RedisServer(tmp_path).start()
    try:
        pool = start_pool(manifest("outage", handler="handlers:echo", minWorkers=2, maxWorkers=2),
                          url=own.url)
        pool.wait_workers(2, 0)
        workers = {w.pid for w in pool.workers()}
        own.stop()
        wait_until(lambda: "redis unavailable, retrying" in pool.log()
                   and "redis unavailable; keeping the workers" in pool.log(), 10,
                   what="workers and master to log the outage")
        own.start()
        q = Queue("outage", redis_url=own.url)
        assert q.result(q.enqueue("after"), timeout=20) == "after"
        assert {w.pid for w in pool.workers()} == workers  # nobody crashed
        wait_until(lambda: "redis is back" in pool.log(), 10, what="the master to reconnect")
        assert pool.stop() == 0
    finally:
        own.stop()
