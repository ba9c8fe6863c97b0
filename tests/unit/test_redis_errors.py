"""Redis errors are classified once (workerpool.redis_errors), for master and worker alike."""

from __future__ import annotations

import pytest
import redis

from workerpool.master.pool import CRASH_BACKOFF_MAX_S, crash_backoff_s
from workerpool.redis_errors import BACKOFF_MAX_S, Trouble, error_code, is_transient


@pytest.mark.parametrize("exc", [
    redis.ConnectionError("Connection refused"), redis.TimeoutError("Timeout reading"),
    redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
    redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
    redis.ResponseError("LOADING Redis is loading the dataset in memory"),
    redis.ResponseError("BUSY Redis is busy running a script."),
    redis.ResponseError("MASTERDOWN Link with MASTER is down"),
    redis.ResponseError("CLUSTERDOWN The cluster is down"),
    redis.ResponseError("TRYAGAIN Multiple keys request during rehashing of slot"),
    redis.ResponseError("Command # 2 (EVALSHA abc 2 q d) of pipeline caused error: "
                        "OOM command not allowed when used memory > 'maxmemory'."),
])
def test_transient_errors_are_ridden_out(exc):
    assert is_transient(exc)


@pytest.mark.parametrize(("exc", "code"), [
    (redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
     "WRONGTYPE"),
    (redis.ResponseError("Error running script (call to f_x): @user_script:5: bad"), ""),
    (redis.ResponseError("NOSCRIPT No matching script."), "NOSCRIPT"),
    (redis.ResponseError("ERR unknown command 'BLMOVE'"), "ERR"),
])
def test_other_errors_are_not_transient(exc, code):
    assert not is_transient(exc) and error_code(exc) == code


def test_backoff_doubles_up_to_its_cap_and_resets():
    trouble = Trouble("test")
    delays = [trouble.failed(redis.ConnectionError("x"), "GET", "k") for _ in range(2000)]
    assert delays[:3] == [0.1, 0.2, 0.4] and max(delays) == BACKOFF_MAX_S
    trouble.succeeded()
    assert trouble.failed(redis.ConnectionError("x"), "GET", "k") == 0.1


def test_crash_backoff_is_bounded_and_never_overflows():
    assert [crash_backoff_s(n) for n in (1, 2, 3)] == [0.1, 0.2, 0.4]
    assert crash_backoff_s(1025) == crash_backoff_s(10**9) == CRASH_BACKOFF_MAX_S
