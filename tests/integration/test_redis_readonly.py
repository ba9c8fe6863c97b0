"""READONLY on a plain URL (a managed service's primary demoted behind its DNS name): the pool
reports it as a failover in progress, drops its connections, never exits, and serves again
once the server takes writes."""

from __future__ import annotations

from helpers import free_port, manifest, wait_until

from workerpool import Queue


def test_a_demoted_server_is_ridden_out(start_pool, redis_url, r):
    pool = start_pool(manifest("ro", handler="handlers:echo", minWorkers=1, maxWorkers=2))
    q = Queue("ro", redis_url=redis_url)
    assert q.result(q.enqueue(1), timeout=30) == 1
    r.execute_command("REPLICAOF", "127.0.0.1", free_port())  # nobody there: writes refused
    try:
        refused = wait_until(lambda: pool.events(error=_read_only), 20, what="READONLY in the log")
        # transient: a failover in progress, not "redis command failed"
        assert {e["event"] for e in refused} == {"redis unavailable, retrying"}
        assert pool.proc.poll() is None
    finally:
        r.execute_command("REPLICAOF", "NO", "ONE")
    assert q.result(q.enqueue(2), timeout=30) == 2
    assert pool.stop() == 0
    q.close()


def _read_only(error: str) -> bool:
    return "READONLY" in error or "ReadOnlyError" in error
