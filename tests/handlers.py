"""Handlers the tests run in real worker processes (imported as `handlers:NAME`)."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import redis

_client: tuple[int, redis.Redis] | None = None


def _redis() -> redis.Redis:
    """One client per process: a forked worker must not reuse its parent's connection."""
    global _client
    if _client is None or _client[0] != os.getpid():
        _client = (os.getpid(), redis.Redis.from_url(os.environ["REDIS_URL"]))
    return _client[1]


def echo(payload: Any) -> Any:
    return payload


def record(payload: Any) -> Any:
    """Note 'started:<tag>', sleep payload['s'] seconds (if a dict), append to 'served:<tag>'."""
    tag = "all"
    if isinstance(payload, dict):
        tag = payload.get("tag", "all")
        if payload.get("s"):
            _redis().rpush(f"started:{tag}", json.dumps(payload))
            time.sleep(payload["s"])
    _redis().rpush(f"served:{tag}", json.dumps(payload))
    return {"served_by": os.getpid()}


def fail(payload: Any) -> Any:
    _redis().rpush("attempts", json.dumps(payload))
    raise RuntimeError(f"cannot handle {payload!r}")


def fail_until(payload: dict[str, Any]) -> Any:
    """Fail until this task has been tried payload['ok_at'] times."""
    n = _redis().incr(f"tries:{payload['id']}")
    if n < payload["ok_at"]:
        raise RuntimeError(f"try {n} fails")
    return n


def die(payload: Any) -> Any:
    """Kill the worker that runs it, every time."""
    _redis().rpush("attempts", json.dumps(payload))
    os.kill(os.getpid(), signal.SIGKILL)


def sleep_forever(payload: Any) -> Any:
    _redis().rpush("started", json.dumps(payload))
    time.sleep(3600)


def on_error(payload: Any, error: str, attempts: int) -> None:
    _redis().rpush("errors", json.dumps({"payload": payload, "error": error, "attempts": attempts}))


def on_error_raises(payload: Any, error: str, attempts: int) -> None:
    on_error(payload, error, attempts)
    raise ValueError("the error handler itself fails")
