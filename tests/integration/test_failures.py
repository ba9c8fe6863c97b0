"""Retries with backoff, dead letters, the error callback, timeouts, crash-looping tasks."""

from __future__ import annotations

import json

import pytest
from helpers import manifest, wait_until

from workerpool import Queue, TaskFailed


def errors(r):
    return [json.loads(x) for x in r.lrange("errors", 0, -1)]


def test_failing_task_is_retried_then_dead_lettered_and_reported(start_pool, redis_url, r):
    start_pool(manifest("fails", handler="handlers:fail", errorHandler="handlers:on_error",
                        minWorkers=1, maxWorkers=1, maxRetries=2, retryDelaySeconds=0.05))
    q = Queue("fails", redis_url=redis_url)
    task_id = q.enqueue({"k": 1})
    with pytest.raises(TaskFailed) as failed:
        q.result(task_id, timeout=20)
    assert failed.value.attempts == 3
    assert r.llen("attempts") == 3
    [dead] = q.dead_letters()
    assert dead["id"] == task_id and dead["attempts"] == 3
    assert "RuntimeError: cannot handle" in dead["error"] and "Traceback" in dead["traceback"]
    # the errorHandler runs after the outcome is recorded (a hung one cannot hold the result)
    wait_until(lambda: errors(r), 10, what="the errorHandler's report")
    assert errors(r) == [{"payload": {"k": 1}, "error": dead["error"], "attempts": 3}]
    stats = q.stats()
    assert (stats["failed"], stats["retried"], stats["dead"]) == (3, 2, 1)


def test_retry_succeeds_on_a_later_attempt(start_pool, redis_url):
    start_pool(manifest("flaky", handler="handlers:fail_until", minWorkers=1, maxWorkers=1,
                        maxRetries=3, retryDelaySeconds=0.05))
    q = Queue("flaky", redis_url=redis_url)
    assert q.result(q.enqueue({"id": "x", "ok_at": 3}), timeout=20) == 3


def test_error_handler_that_raises_does_not_kill_the_worker(start_pool, redis_url, r):
    pool = start_pool(manifest("eh", handler="handlers:fail", errorHandler="handlers:on_error_raises",
                               minWorkers=1, maxWorkers=1, maxRetries=0))
    pool.wait_workers(1, 0)
    pid = pool.workers()[0].pid
    q = Queue("eh", redis_url=redis_url)
    ids = []
    for n in range(3):
        ids.append(q.enqueue(n))
        with pytest.raises(TaskFailed):
            q.result(ids[-1], timeout=15)
    wait_until(lambda: len(errors(r)) == 3, 10, what="3 errorHandler reports")
    raised = pool.wait_for_event("errorHandler raised", level="ERROR", role="permanent", pid=pid,
                                 count=3)
    assert [e["id"] for e in raised] == ids
    assert [w.pid for w in pool.workers()] == [pid]
    pool.assert_logs(prohibited=["worker exited"])


def test_task_timeout_counts_as_failed_attempt(start_pool, redis_url, r):
    start_pool(manifest("slow", handler="handlers:sleep_forever", minWorkers=1, maxWorkers=1,
                        maxRetries=1, retryDelaySeconds=0, taskTimeoutSeconds=0.3))
    q = Queue("slow", redis_url=redis_url)
    with pytest.raises(TaskFailed, match="TaskTimeout"):
        q.result(q.enqueue("x"), timeout=20)
    assert r.llen("started") == 2


def test_task_that_kills_its_worker_ends_dead_lettered(start_pool, redis_url, r):
    pool = start_pool(manifest("poison", handler="handlers:die", errorHandler="handlers:on_error",
                               minWorkers=1, maxWorkers=1, maxRetries=2))
    q = Queue("poison", redis_url=redis_url)
    task_id = q.enqueue("poison")
    with pytest.raises(TaskFailed, match="WorkerLost"):
        q.result(task_id, timeout=30)
    assert r.llen("attempts") == 3  # the first run and 2 retries, then no more
    assert wait_until(lambda: errors(r), 10, what="the errorHandler's report")[0]["attempts"] == 3
    pool.wait_workers(1, 0)  # the pool replaced its worker each time and is still up
    assert len(pool.events("worker exited", reason="killed by SIGKILL", level="WARNING")) == 3
    pool.assert_logs([{"event": "workers crash-looping, backing off", "level": "WARNING"}])
