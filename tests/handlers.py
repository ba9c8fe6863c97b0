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


# --- hostile user code: one handler whose behaviour the payload chooses -------------------

class BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("even __str__ fails")


class Base(BaseException):
    """A BaseException that is not an Exception (user code may raise one)."""


def _spawn_sleeper(payload: Any) -> Any:
    import subprocess

    proc = subprocess.Popen(["sleep", "1000"])
    _redis().rpush("spawned", proc.pid)
    return proc.pid


def _fork(payload: Any) -> Any:
    pid = os.fork()  # the child returns too, into the worker: it must not serve
    _redis().rpush("forked", json.dumps({"pid": os.getpid(), "child": pid}))
    return pid


def _mutate_and_fail(payload: Any) -> Any:
    _redis().rpush("seen", json.dumps(payload))
    payload["n"] = payload.get("n", 0) + 1
    payload["unserialisable"] = {1, 2}
    raise RuntimeError("failed after changing its payload")


def _signals(how: str) -> None:
    """Take the worker's SIGTERM away: replace its handler, or block the signal."""
    if how == "ignore":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})


def _ignore_alarm_and_sleep(payload: Any) -> None:
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    time.sleep(payload.get("s", 0))


_LEAK: list[bytes] = []


def _leak(payload: Any) -> Any:
    _LEAK.append(b"x" * (int(payload["mib"]) << 20))
    return len(_LEAK)


BEHAVIOURS: dict[str, Any] = {
    "return": lambda p: p.get("value"),
    "return_surrogate": lambda p: {"text": "a\udcffb"},
    "return_set": lambda p: {1, 2},
    "raise": lambda p: (_ for _ in ()).throw(ValueError("plain")),
    "raise_bad_str": lambda p: (_ for _ in ()).throw(BadStr()),
    "raise_base": lambda p: (_ for _ in ()).throw(Base("base")),
    "raise_surrogate": lambda p: (_ for _ in ()).throw(ValueError("bad \udcff text")),
    "keyboard_interrupt": lambda p: (_ for _ in ()).throw(KeyboardInterrupt()),
    "sys_exit": lambda p: (_ for _ in ()).throw(SystemExit(p.get("code", 0))),
    "os_exit": lambda p: os._exit(p.get("code", 0)),
    "sigkill": lambda p: os.kill(os.getpid(), signal.SIGKILL),
    "sigterm": lambda p: os.kill(os.getpid(), signal.SIGTERM),
    "sleep": lambda p: time.sleep(p.get("s", 0)),
    "ignore_alarm_and_sleep": lambda p: _ignore_alarm_and_sleep(p),
    "ignore_term": lambda p: _signals("ignore"),
    "block_term": lambda p: _signals("block"),
    "spawn": _spawn_sleeper,
    "fork": _fork,
    "mutate_and_fail": _mutate_and_fail,
    "leak": _leak,
}


def hostile(payload: Any) -> Any:
    """Do what payload['do'] says (see BEHAVIOURS); anything else is echoed."""
    if isinstance(payload, dict) and payload.get("do") in BEHAVIOURS:
        _redis().rpush("attempts", json.dumps(payload))
        return BEHAVIOURS[payload["do"]](payload)
    return payload


def on_error_hostile(payload: Any, error: str, attempts: int) -> None:
    """Report like on_error, then misbehave as payload['on_error'] says (if a dict)."""
    on_error(payload, error, attempts)
    if isinstance(payload, dict) and payload.get("on_error") in BEHAVIOURS:
        BEHAVIOURS[payload["on_error"]](payload.get("on_error_args", {}))
