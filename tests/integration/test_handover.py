"""The master's pre-connected client handed to a forked child (connection.release_in_parent).

These tests hold redis-py to the behaviour the hand-over relies on: a connection's
disconnect() in a process other than the one its `pid` names closes the descriptor without
shutdown(2), so the child's copy of the socket keeps working. If redis-py changes that, the
child reconnects (a new client id) or fails, and these tests fail.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import redis

from workerpool.connection import preconnected, release_in_parent


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def fork_child(work: Callable[[], bool]) -> tuple[int, int]:
    """Fork a child that waits for a byte on a pipe, then exits 0 if work() is true.
    Returns (pid, the write end of the pipe)."""
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(go_w)
            os.read(go_r, 1)  # the parent has released its copy
            code = 0 if work() else 2
        finally:
            os._exit(code)
    os.close(go_r)
    return pid, go_w


def let_go_and_reap(pid: int, go_w: int) -> int:
    os.write(go_w, b"!")
    os.close(go_w)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_the_child_keeps_the_connection_whose_descriptor_the_parent_closes(redis_url, r):
    client = preconnected(redis_url, 5.0)
    connection_id = client.client_id()  # the connection made here, before the fork

    def child() -> bool:  # the same connection, not a silent reconnect after a shutdown(2)
        return client.client_id() == connection_id and bool(client.set("handover", "child"))

    pid, go_w = fork_child(child)
    before = open_fds()
    release_in_parent(client, pid)
    after = open_fds()
    assert let_go_and_reap(pid, go_w) == 0
    assert after == before - 1  # the parent's descriptor for the child's socket
    assert r.get("handover") == b"child"
    client.close()  # what garbage collection would do later: nothing left to close


def test_a_client_for_an_unreachable_redis_is_made_and_handed_over_without_error(redis_url):
    """A worker forked during an outage connects later, in the child."""
    client = preconnected("redis://127.0.0.1:1/0", 1.0)
    assert client.connection is None  # pooled: it connects on first use
    release_in_parent(client, os.getpid() + 1)  # nothing to release; must not raise
    with pytest.raises(redis.ConnectionError):
        client.ping()


@pytest.mark.slow
def test_a_cluster_client_is_shared_by_every_fork_and_left_open(cluster):
    """A RedisCluster has no `.connection`: its pools connect afresh in the child, and the
    master keeps the one client for every later fork."""
    client = preconnected(cluster.url, 5.0)
    assert client.set("{handover}:master", 1)  # the master's own node connections exist

    def child() -> bool:
        return bool(client.set("{handover}:child", "child"))

    pid, go_w = fork_child(child)
    before = open_fds()
    release_in_parent(client, pid)
    after = open_fds()
    assert let_go_and_reap(pid, go_w) == 0
    assert after == before
    assert preconnected(cluster.url, 5.0) is client
    assert client.get("{handover}:child") == b"child"
