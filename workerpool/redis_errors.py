"""Redis errors, classified once for master and worker: ride out, or report and carry on.

Transient: the server is unreachable, slow, restarting, failing over or full — the same call
succeeds later, so the caller backs off and retries. Anything else (WRONGTYPE on a key a user
reused, a Lua error, a refused command) will fail again the same way: it is logged as an error
naming the command and the key, retried no faster than the backoff, and never ends a process.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import redis

from . import logs
from .errors import exception_text

# Error codes (the first word of a Redis error reply) that mean "try again later": a server
# loading or busy, a failover under way (READONLY from a demoted primary, MASTERDOWN, a
# cluster's slots moving: MOVED, ASK, TRYAGAIN, CLUSTERDOWN), or full memory.
TRANSIENT_CODES = frozenset({"READONLY", "LOADING", "BUSY", "MASTERDOWN", "CLUSTERDOWN",
                             "TRYAGAIN", "OOM", "NOREPLICAS", "MOVED", "ASK"})
# redis-py strips the code from these replies and raises its own class instead; ClusterError
# is its "TTL exhausted" after too many redirections, RedisClusterException its "no node
# reachable" (which is not even a RedisError).
_TRANSIENT_CLASSES: tuple[type[Exception], ...] = (
    redis.ConnectionError, redis.TimeoutError, redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError, redis.exceptions.ClusterError,
    redis.exceptions.TryAgainError, redis.exceptions.AskError,
    redis.exceptions.RedisClusterException)
# What a call to any of our clients (one server, Sentinel, Cluster) raises for a Redis problem.
REDIS_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, redis.exceptions.RedisClusterException)
# redis-py prefixes errors inside a pipeline with the command that failed
_PIPELINE_PREFIX = re.compile(r"^Command # \d+ \(.*?\) of pipeline caused error: ", re.DOTALL)

BACKOFF_FIRST_S = 0.1  # first retry after a failure: an outage shorter than this goes unnoticed
BACKOFF_MAX_S = 5.0  # the slowest retry: Redis back after an outage is seen within this
LOG_EVERY = 10  # during a run of failures, log the first and every tenth


def error_code(exc: BaseException) -> str:
    """The Redis error code of a reply error ('WRONGTYPE', 'BUSY', ...), or ''."""
    text = _PIPELINE_PREFIX.sub("", str(exc)).lstrip()
    word = text.split(" ", 1)[0]
    return word if word.isupper() and word.isalpha() else ""


def drop_stale_connections(client: Any, exc: BaseException) -> None:
    """After READONLY, close `client`'s connections so the next call connects afresh.

    A demoted primary answers READONLY on a connection that still works, so nothing else would
    make a client leave it: a Sentinel client asks the sentinels again on reconnect (redis-py
    does that itself for READONLY), a URL whose DNS name moved to the new primary (a managed
    service) resolves it again. A Cluster client follows MOVED itself.
    """
    if not (isinstance(exc, redis.exceptions.ReadOnlyError) or error_code(exc) == "READONLY"):
        return
    connection = getattr(client, "connection", None)  # a single-connection client (workers)
    if connection is not None:
        connection.disconnect()
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        pool.disconnect()


def is_transient(exc: BaseException) -> bool:
    """True when the same call is expected to succeed later (outage, failover, full memory)."""
    if isinstance(exc, _TRANSIENT_CLASSES):
        return True
    if isinstance(exc, redis.RedisError):
        return error_code(exc) in TRANSIENT_CODES
    return False


@dataclass(slots=True)
class Trouble:
    """Backoff and throttled logging for one recurring Redis call (or group of calls).

    `failed()` returns how long to wait before the next try, doubling up to BACKOFF_MAX_S;
    `succeeded()` resets it and logs the recovery once. Master and worker use the same class,
    so an outage reads the same in both logs.
    """

    what: str  # the call or step, for the log: 'claim', 'heartbeat', ...
    failures: int = 0
    delay_s: float = 0.0

    def failed(self, exc: BaseException, command: str, key: str) -> float:
        self.failures += 1
        self.delay_s = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** min(self.failures - 1, 16))
        if self.failures == 1 or self.failures % LOG_EVERY == 0:
            fields: dict[str, Any] = {"step": self.what, "command": command, "key": key,
                      "error": one_line(exc), "failures": self.failures,
                      "retry_in_s": round(self.delay_s, 2)}
            if is_transient(exc):
                logs.event("redis unavailable, retrying", level=logging.WARNING, **fields)
            else:
                logs.event("redis command failed", level=logging.ERROR, **fields)
        return self.delay_s

    def succeeded(self) -> None:
        if self.failures:
            logs.event("redis is back", step=self.what, failures=self.failures)
        self.failures = 0
        self.delay_s = 0.0


def one_line(exc: BaseException) -> str:
    """`Type: message` on one line (for a log field); without the client repr that redis-py
    appends to a Sentinel's "No master found" (pages of connection settings)."""
    return exception_text(exc).split(" : <redis.", 1)[0].replace("\r", "\\r").replace("\n", "\\n")
