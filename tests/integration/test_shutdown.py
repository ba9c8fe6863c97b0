"""SIGTERM/SIGINT drain the workers; a second signal or the grace period stops them now."""

from __future__ import annotations

import json
import signal

from helpers import RedisServer, manifest, wait_until

from workerpool import Queue


def test_sigterm_lets_the_current_task_finish(start_pool, redis_url, r):
    pool = start_pool(manifest("drain", handler="handlers:record", minWorkers=2, maxWorkers=2))
    pool.wait_workers(2, 0)
    workers = {w.pid for w in pool.workers()}
    q = Queue("drain", redis_url=redis_url)
    q.enqueue({"s": 1.0, "n": 1, "tag": "drain"})
    wait_until(lambda: r.llen("started:drain") == 1, 10, what="the task to start")
    assert pool.stop(timeout=15) == 0  # one SIGTERM
    assert [json.loads(x)["n"] for x in r.lrange("served:drain", 0, -1)] == [1]
    # each worker says it stopped, and the master logs each exit as clean
    assert {e["pid"] for e in pool.events("worker exiting", reason="stopped")} == workers
    assert {e["worker"] for e in pool.events("worker exited", reason="stopped", level="INFO")} == workers
    pool.assert_logs([{"event": "master exiting", "code": 0}])
    assert q.stats()["masters"] == []


def test_second_ctrl_c_stops_now_and_returns_the_task(start_pool, redis_url, r):
    pool = start_pool(manifest("cc", handler="handlers:sleep_forever", minWorkers=1, maxWorkers=1))
    q = Queue("cc", redis_url=redis_url)
    q.enqueue("long")
    wait_until(lambda: r.llen("started") == 1, 10, what="the task to start")
    pool.signal(signal.SIGINT)
    pool.wait_for_event("master stopping: workers finish their current task", timeout=5)
    pool.signal(signal.SIGINT)
    assert pool.stop(timeout=10) == 0  # the task sleeps forever: only the second signal ends it
    pool.assert_logs([{"event": "killing workers now", "level": "WARNING"}],
                     prohibited=["grace period over"])  # stopped by the signal, not the clock
    [item] = r.lrange("cc", 0, -1)
    assert json.loads(item)["attempts"] == 0  # returned uncharged: the stop was ours


def test_grace_period_expiry_kills_and_returns_the_task(start_pool, redis_url, r):
    pool = start_pool(manifest("grace", handler="handlers:sleep_forever", minWorkers=1,
                               maxWorkers=1, shutdownGraceSeconds=0.5))
    q = Queue("grace", redis_url=redis_url)
    q.enqueue("long")
    wait_until(lambda: r.llen("started") == 1, 10, what="the task to start")
    assert pool.stop(timeout=10) == 0  # one SIGTERM
    warnings = [e["event"] for e in pool.events(level="WARNING")]
    assert warnings == ["grace period over", "killing workers now"]
    assert q.backlog() == 1 and q.stats()["in_flight"] == 0


def test_redis_outage_is_ridden_out(start_pool, redis_server, tmp_path):
    own = RedisServer(tmp_path).start()
    try:
        pool = start_pool(manifest("outage", handler="handlers:echo", minWorkers=2, maxWorkers=2),
                          url=own.url)
        pool.wait_workers(2, 0)
        workers = {w.pid for w in pool.workers()}
        own.stop()
        pool.wait_for_event("redis unavailable, retrying", role="permanent")  # a worker
        pool.wait_for_event("redis unavailable; keeping the workers, pausing scale-up", role="master")
        own.start()
        q = Queue("outage", redis_url=own.url)
        assert q.result(q.enqueue("after"), timeout=20) == "after"
        assert {w.pid for w in pool.workers()} == workers  # nobody crashed
        pool.wait_for_event("redis is back; scale-up resumes", role="master")
        assert pool.stop() == 0
    finally:
        own.stop()
