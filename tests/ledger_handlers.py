"""Handlers for the production-Redis tests: they note what they served in a separate "ledger"
Redis (LEDGER_URL), which outlives the failovers of the Redis under test."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import redis

_client: tuple[int, redis.Redis] | None = None


def _ledger() -> redis.Redis:
    """One client per process: a forked worker must not reuse its parent's connection."""
    global _client
    if _client is None or _client[0] != os.getpid():
        _client = (os.getpid(), redis.Redis.from_url(os.environ["LEDGER_URL"]))
    return _client[1]


def note(payload: dict[str, Any]) -> Any:
    """Sleep payload['s'] seconds, then append [n, the time] to the ledger list 'served'."""
    time.sleep(payload.get("s", 0))
    _ledger().rpush("served", json.dumps([payload["n"], time.time()]))
    return payload["n"]


def flaky(payload: dict[str, Any]) -> Any:
    """Fail the first payload['fail'] tries of this task (counted in the ledger), then note it."""
    tries = _ledger().incr(f"tries:{payload['n']}")
    if tries <= payload.get("fail", 0):
        raise RuntimeError(f"try {tries} of task {payload['n']} fails")
    return note(payload)


def served(ledger: redis.Redis) -> list[tuple[int, float]]:
    """What the handlers noted, in order: (task number, time served)."""
    return [tuple(json.loads(x)) for x in ledger.lrange("served", 0, -1)]  # type: ignore[misc]
