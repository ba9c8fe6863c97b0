"""A Worker serving in pytest's own process (burst mode) against the test run's redis-server:
no master, no fork; it returns when the queue is empty."""

from __future__ import annotations

import json
import signal
import threading

import pytest
from helpers import manifest

from workerpool import Queue, TaskFailed
from workerpool.process import ExitCode
from workerpool.protocol import Keys
from workerpool.spec import parse_manifest
from workerpool.worker import burst


@pytest.fixture(autouse=True)
def handlers_redis(redis_url, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)  # where tests/handlers.py writes


def spec_of(name: str, **fields):
    return parse_manifest(manifest(name, **{"handler": "handlers:hostile", **fields}))


def assert_nothing_held(r, queue: str) -> None:
    """Every task acknowledged: nothing waiting, in flight or registered as alive."""
    keys = Keys(queue)
    assert r.llen(queue) == 0
    assert not r.keys(keys.processing("*"))
    assert r.zcard(keys.alive) == 0


def test_tasks_are_served_acknowledged_and_their_results_stored(redis_url, r):
    q = Queue("ip-ok", redis_url=redis_url)
    ids = q.enqueue_many([{"do": "return", "value": i} for i in range(30)])
    assert burst(spec_of("ip-ok"), redis_url) == (ExitCode.IDLE, 30)
    assert [q.result(task_id, timeout=1) for task_id in ids] == list(range(30))
    assert_nothing_held(r, "ip-ok")
    assert len(r.lrange("attempts", 0, -1)) == 30


def test_retries_then_dead_letters_and_calls_the_error_handler_once(redis_url, r):
    q = Queue("ip-fail", redis_url=redis_url)
    task_id = q.enqueue({"do": "raise"})
    spec = spec_of("ip-fail", maxRetries=2, retryDelaySeconds=0, errorHandler="handlers:on_error")
    assert burst(spec, redis_url) == (ExitCode.IDLE, 3)  # the retries were promoted by the burst
    assert len(r.lrange("attempts", 0, -1)) == 3
    [report] = [json.loads(e) for e in r.lrange("errors", 0, -1)]
    assert report["attempts"] == 3 and report["error"].startswith("ValueError")
    [dead] = q.dead_letters()
    assert dead["attempts"] == 3 and dead["id"] == task_id
    with pytest.raises(TaskFailed):
        q.result(task_id, timeout=1)
    assert_nothing_held(r, "ip-fail")
    assert r.zcard(Keys("ip-fail").delayed) == 0


def test_an_element_that_is_not_a_task_is_dead_lettered(redis_url, r):
    r.rpush("ip-bad", b"\xff not a task", json.dumps({"do": "return", "value": 1}))
    spec = spec_of("ip-bad", errorHandler="handlers:on_error")
    assert burst(spec, redis_url) == (ExitCode.IDLE, 2)
    [dead] = Queue("ip-bad", redis_url=redis_url).dead_letters()
    assert dead["error"].startswith("BadItem")
    [report] = [json.loads(e) for e in r.lrange("errors", 0, -1)]
    assert report["error"].startswith("BadItem") and report["attempts"] == 1
    assert_nothing_held(r, "ip-bad")


def test_a_task_over_its_time_limit_is_interrupted(redis_url, r):
    q = Queue("ip-slow", redis_url=redis_url)
    task_id = q.enqueue({"do": "sleep", "s": 3600})
    spec = spec_of("ip-slow", taskTimeoutSeconds=0.2, maxRetries=0)
    assert burst(spec, redis_url) == (ExitCode.IDLE, 1)
    with pytest.raises(TaskFailed, match="TaskTimeout"):
        q.result(task_id, timeout=1)
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # no alarm left behind


def test_tasks_are_claimed_in_batches_and_the_helper_thread_stops(redis_url, r):
    q = Queue("ip-batch", redis_url=redis_url)
    q.enqueue_many([{"do": "return", "value": i} for i in range(200)])
    r.config_resetstat()
    assert burst(spec_of("ip-batch", prefetch=20), redis_url) == (ExitCode.IDLE, 200)
    stats = r.info("commandstats")
    acks = sum(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("evalsha", "eval"))
    # one ACK_CLAIM records a batch and claims the next: a task per call would make 200
    assert acks <= 40
    assert_nothing_held(r, "ip-batch")
    assert not [t for t in threading.enumerate() if t.name == "give-back"]


def test_an_empty_queue_ends_the_burst_and_retries_not_due_stay_delayed(redis_url, r):
    assert burst(spec_of("ip-empty"), redis_url) == (ExitCode.IDLE, 0)
    Queue("ip-empty", redis_url=redis_url).enqueue({"do": "raise"})
    assert burst(spec_of("ip-empty", retryDelaySeconds=300), redis_url) == (ExitCode.IDLE, 1)
    assert r.zcard(Keys("ip-empty").delayed) == 1  # a master (or a later burst) promotes it
    assert_nothing_held(r, "ip-empty")


def test_sigterm_stops_the_burst_after_the_task_in_hand_and_handlers_are_restored(redis_url, r):
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGALRM, signal.SIGINT)}
    q = Queue("ip-term", redis_url=redis_url)
    q.enqueue_many([{"do": "sigterm"}, *({"do": "return", "value": i} for i in range(5))])
    assert burst(spec_of("ip-term", prefetch=1), redis_url) == (ExitCode.OK, 1)
    assert r.llen("ip-term") == 5  # what it had not started is back in the queue
    assert not r.keys(Keys("ip-term").processing("*"))
    assert {s: signal.getsignal(s) for s in before} == before
