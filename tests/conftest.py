"""Shared fixtures: a private redis-server, pools as real subprocesses, no leftover children."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
from helpers import RedisServer, RunningPool, wait_until

from workerpool.embedded import find_redis_server


def _missing(what: str) -> None:
    """Infrastructure missing: skip on a laptop, fail in CI (where it must be installed)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is missing in CI")
    pytest.skip(f"{what} is not installed")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if not shutil.which("redis-server"):
        try:
            find_redis_server()
        except Exception:
            _missing("redis-server")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def start_pool(tmp_path: Path, redis_url: str) -> Iterator[Callable[..., RunningPool]]:
    """Start `workerpool run` for a manifest; every pool is stopped (or killed) at teardown."""
    started: list[RunningPool] = []

    def start(doc: dict[str, Any], *extra: str, url: str | None = None) -> RunningPool:
        pool = RunningPool(tmp_path, url or redis_url, doc, *extra)
        started.append(pool)
        return pool

    yield start
    for pool in started:
        pool.kill()
    # a line that is not a JSON event is a traceback Python printed or a stray print: a bug
    stray = {p.log_path.name: p.stray_lines() for p in started if p.log_format == "json"}
    if any(stray.values()):
        pytest.fail(f"a pool wrote lines that are not JSON events: {stray}")


@pytest.fixture
def ledger(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    """Where tests/ledger_handlers.py note what ran: the tests' own server, which no failover
    of the Redis under test touches."""
    monkeypatch.setenv("LEDGER_URL", redis_url)
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def no_leftover_children() -> Iterator[None]:
    """A test that leaves a child process behind fails (after a short grace to exit)."""
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    yield
    def leftovers() -> list[psutil.Process]:
        return [p for p in me.children(recursive=True)
                if p.pid not in before and p.status() != psutil.STATUS_ZOMBIE]
    try:
        wait_until(lambda: not leftovers(), 10, what="child processes to exit")
    except AssertionError:
        left = leftovers()
        for p in left:
            p.kill()
        pytest.fail(f"test left child processes behind: {[p.cmdline() for p in left]}")
