"""Least privilege: a pool, its producer, the CLI and the operator's status reader work as a
Redis user that may touch only one queue's keys and our commands; another queue's user is
refused with one line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import redis
from helpers import ROOT, TESTS, containing, manifest

from workerpool import Queue, TaskFailed
from workerpool.acl import acl_rules
from workerpool.connection import connect
from workerpool.protocol import Keys
from workerpool.queue import read_stats


@pytest.fixture
def user_url(r: redis.Redis, redis_url: str) -> Iterator[str]:
    """A URL of user 'pool' who may use the queue 'acl' (and 'a*b[1]', glob characters)."""
    rules = [*acl_rules("acl").split(), *acl_rules("a*b[1]").split()[1:]]
    r.execute_command("ACL", "SETUSER", "pool", "on", ">s3cret", *rules)
    r.execute_command("ACL", "SETUSER", "other", "on", ">0ther", *acl_rules("other").split())
    address = urlsplit(redis_url).netloc
    yield f"redis://pool:s3cret@{address}/0"
    r.execute_command("ACL", "DELUSER", "pool", "other")


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{ROOT}"}
    return subprocess.run([sys.executable, "-m", "workerpool", *args, "--redis-url", url],
                          capture_output=True, text=True, env=env, timeout=60)


def test_a_pool_the_cli_and_the_status_reader_work_under_the_acl(user_url, redis_url, start_pool,
                                                                 monkeypatch):
    monkeypatch.setenv("LEDGER_URL", redis_url)  # the handler's notes: as admin, not the user
    pool = start_pool(manifest("acl", handler="ledger_handlers:flaky", minWorkers=1, maxWorkers=2,
                               maxRetries=1, retryDelaySeconds=0.05), url=user_url)
    glob = start_pool(manifest("glob", queue="a*b[1]", handler="handlers:echo", minWorkers=1,
                               maxWorkers=1), url=user_url)
    q = Queue("acl", redis_url=user_url)
    ok = q.enqueue({"n": 1, "fail": 1})  # fails once, then served by the retry
    doomed = q.enqueue({"n": 2, "fail": 9})  # fails twice: dead-lettered
    assert q.result(ok, timeout=30) == 1
    with pytest.raises(TaskFailed):
        q.result(doomed, timeout=30)
    g = Queue("a*b[1]", redis_url=user_url)
    assert g.result(g.enqueue([1, 2]), timeout=30) == [1, 2]
    stats = cli(user_url, "stats", "--queue", "acl")
    assert stats.returncode == 0 and "processed      1" in stats.stdout, stats.stderr
    dead = cli(user_url, "dead", "list", "--queue", "acl")
    assert dead.returncode == 0 and "attempts=2" in dead.stdout, dead.stderr
    assert cli(user_url, "dead", "requeue", "--queue", "acl").returncode == 0
    client = connect(user_url, socket_timeout=2)  # as the operator reads a pool's status
    status = read_stats(client, Keys("acl"))
    assert status["dead"] == 1 and status["masters"][0]["permanent"] == 1
    client.close()
    for p in (pool, glob):
        assert p.stop() == 0
        p.assert_logs(prohibited=["redis command failed", {"error": containing("no permissions")}])
    q.close()
    g.close()


def test_a_user_of_another_queue_is_refused_with_one_line(user_url, redis_url, start_pool):
    other_url = user_url.replace("pool:s3cret", "other:0ther")
    result = cli(other_url, "stats", "--queue", "acl")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "no permissions" in result.stderr
    assert "0ther" not in result.stderr
    assert "Traceback" not in result.stderr
    pool = start_pool(manifest("acl", handler="handlers:echo", minWorkers=1, maxWorkers=1,
                               shutdownGraceSeconds=1),
                      url=other_url)
    pool.wait_for_event(error=containing("no permissions"), timeout=20)
    assert pool.proc.poll() is None  # refused, reported, retried no faster than the backoff
    assert "0ther" not in pool.log()  # the password: nowhere in the log's text
    pool.stop()
