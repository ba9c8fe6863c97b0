"""Handlers of the cluster scenarios; they run in workers inside the operator's pod or worker pods."""

from __future__ import annotations

import functools
import os
import socket
import time
from typing import Any

import redis


@functools.cache
def _redis() -> redis.Redis:
    # the master hands its workers the pool's Redis URL (from the Secret) in REDIS_URL
    return redis.Redis.from_url(os.environ["REDIS_URL"])


def record(payload: dict[str, Any]) -> dict[str, Any]:
    """Count a start of task n, work for payload["s"] seconds, count its end: a task started
    twice was interrupted (redelivered); one that never ended was lost."""
    tag, n = payload["tag"], str(payload["n"])
    _redis().hincrby(f"started:{tag}", n, 1)
    _redis().hset(f"pods:{tag}", n, socket.gethostname())  # which pod ran it (spec.pods tests)
    time.sleep(payload.get("s", 0))
    _redis().hincrby(f"runs:{tag}", n, 1)
    return {"n": payload["n"], "pod": socket.gethostname()}


def hog(payload: dict[str, Any]) -> None:
    """Allocate (and touch) memory in 64 MiB steps up to payload["mib"]: past the container's
    memory limit the kernel's OOM killer ends this process."""
    _redis().incr("hog:attempts")
    chunks = []
    for _ in range(payload["mib"] // 64):
        chunks.append(b"\x01" * (64 * 2**20))  # written, so every page is really allocated
    _redis().incr("hog:survived")
