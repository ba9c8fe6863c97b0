"""?wait_replicas=N: the producer's enqueues and the workers' acknowledgements are followed by
WAIT on the same connection (here no replica answers: each WAIT gives up after its timeout)."""

from __future__ import annotations

from helpers import manifest

from workerpool import Queue


def _waits(r) -> int:
    return int(r.info("commandstats").get("cmdstat_wait", {}).get("calls", 0))


def test_enqueue_and_ack_wait_for_replicas(start_pool, redis_url, r):
    url = redis_url + "?wait_replicas=1&wait_timeout_ms=20"
    r.config_resetstat()
    pool = start_pool(manifest("w", handler="handlers:echo", minWorkers=1, maxWorkers=1), url=url)
    q = Queue("w", redis_url=url)
    first = q.enqueue(1)
    assert _waits(r) == 1  # the enqueue's own
    assert q.result(first, timeout=30) == 1
    ids = q.enqueue_many([2, 3])
    assert [q.result(i, timeout=30) for i in ids] == [2, 3]
    assert _waits(r) >= 3  # + one per enqueue_many, + at least one per acknowledgement batch
    assert pool.stop() == 0
    q.close()


def test_without_the_option_nothing_waits(start_pool, redis_url, r):
    r.config_resetstat()
    pool = start_pool(manifest("nw", handler="handlers:echo", minWorkers=1, maxWorkers=1))
    q = Queue("nw", redis_url=redis_url)
    assert q.result(q.enqueue(1), timeout=30) == 1
    assert _waits(r) == 0
    assert pool.stop() == 0
    q.close()
