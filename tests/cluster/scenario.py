"""The user's side of the cluster scenarios: their image, Redis in the cluster, producers outside.

`set_up_shop` is the session fixture `shop` (conftest.py): deploy/ with the operator image
swapped for the user's (manifests/shop), Redis behind a Service, and the pools of
manifests/pools.yaml with their Redis URL in a Secret.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from helpers import wait_until
from node import Cluster

NS = "workerpool"
HERE = Path(__file__).parent
MANIFESTS = HERE / "manifests"
REDIS_IP = "10.96.0.50"  # the Service's fixed ClusterIP (manifests/redis.yaml)
REDIS_URL = f"redis://{REDIS_IP}:6379/0"


def redis(cluster: Cluster, *args: str, check: bool = True) -> str:
    return cluster.in_ns("redis-cli", "-h", REDIS_IP, *args, check=check).stdout.strip()


def counts(cluster: Cluster, key: str) -> dict[int, int]:
    flat = redis(cluster, "hgetall", key).split()
    return {int(n): int(c) for n, c in zip(flat[::2], flat[1::2], strict=True)}


def enqueue(cluster: Cluster, queue: str, payloads: Iterable[Any]) -> None:
    """Producers outside the cluster: the CLI, on the host, in the node's network namespace."""
    lines = "\n".join(json.dumps(p) for p in payloads) + "\n"
    cluster.in_ns(sys.executable, "-m", "workerpool", "enqueue", "--queue", queue,
                  "--redis-url", REDIS_URL, "--file", "-", input=lines)


def tasks(tag: str, count: int, seconds: float) -> list[dict[str, Any]]:
    return [{"tag": tag, "n": n, "s": seconds} for n in range(count)]


def status(cluster: Cluster, pool: str) -> dict[str, Any]:
    return dict(cluster.json("get", "wp", "-n", NS, pool).get("status", {}))


def set_up_shop(cluster: Cluster) -> Cluster:
    """deploy/ with the operator image swapped for the user's, Redis behind a Service, and the
    pools of manifests/pools.yaml with their Redis URL in a Secret."""
    cluster.build("docker.io/library/workerpool-test-redis:1.0", HERE / "redis")
    cluster.build("docker.io/library/shop-workers:1.0", HERE / "app")
    began = time.monotonic()
    cluster.kubectl("apply", "-k", str(MANIFESTS / "shop"))
    cluster.kubectl("apply", "-f", str(MANIFESTS / "redis.yaml"))
    wait_until(lambda: redis(cluster, "ping", check=False) == "PONG", 120, interval=0.2,
               what="Redis behind its Service")
    enqueue(cluster, "shop", tasks("first", 1, 0))
    cluster.kubectl("apply", "-f", str(MANIFESTS / "pools.yaml"))
    wait_until(lambda: counts(cluster, "runs:first") == {0: 1}, 180, interval=0.2,
               what="the first task to be served")
    cluster.note("apply -k (own image) + Redis + pools -> first task served", time.monotonic() - began)
    return cluster
