"""spec.pods on a real node: worker pods scale out on saturation, scale in idlest-first after the
cooldown without cutting a running task, lose nothing to a force-deleted pod, drain on delete.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import pytest
import yaml
from helpers import wait_until
from node import Cluster
from scenario import REDIS_URL, counts, enqueue, redis, status, tasks
from test_operator_pod import NS

POOL = "spread"
PER_POD = 4
COOLDOWN_S = 15


def pool_doc() -> dict[str, Any]:
    return {"apiVersion": "workerpool.dev/v1alpha1", "kind": "WorkerPool",
            "metadata": {"name": POOL, "namespace": NS},
            "spec": {"handler": "shop.tasks:record", "queue": POOL, "minWorkers": 1,
                     "maxWorkers": PER_POD, "prefetch": 1, "idleTimeoutSeconds": 2,
                     "shutdownGraceSeconds": 20,
                     "redis": {"urlFrom": {"secretKeyRef": {"name": "shop-redis", "key": "url"}}},
                     "pods": {"min": 1, "max": 3, "stabilizationSeconds": 2,
                              "cooldownSeconds": COOLDOWN_S, "image": "shop-workers:1.0",
                              "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                                            "limits": {"memory": "512Mi"}}}}}


def worker_pods(cluster: Cluster) -> list[dict[str, Any]]:
    pods = cluster.json("get", "pods", "-n", NS, "-l", f"workerpool.dev/pool={POOL}")["items"]
    return [p for p in pods if "deletionTimestamp" not in p["metadata"]]


def where(cluster: Cluster, tag: str) -> dict[int, str]:
    """Task n -> the pod that started it (the handler records its hostname)."""
    flat = redis(cluster, "hgetall", f"pods:{tag}").split()
    return {int(n): pod for n, pod in zip(flat[::2], flat[1::2], strict=True)}


@pytest.fixture(scope="module")
def spread(shop: Cluster) -> Cluster:
    shop.kubectl("apply", "-f", "-", input=yaml.safe_dump(pool_doc()))
    wait_until(lambda: status(shop, POOL).get("readyPods") == 1, 180, interval=0.5,
               what="the first worker pod's master to serve")
    return shop


def test_saturation_adds_pods_and_the_cooldown_removes_the_idle_ones(spread: Cluster) -> None:
    first = {p["metadata"]["name"] for p in worker_pods(spread)}
    enqueue(spread, POOL, tasks("wave", 48, 6.0))
    began = time.monotonic()
    wait_until(lambda: status(spread, POOL).get("busyWorkers") == PER_POD, 60, interval=0.2,
               what="the first pod saturated")
    saturated = time.monotonic()
    wait_until(lambda: set(where(spread, "wave").values()) - first, 180, interval=0.2,
               what="a task started in a new pod")
    spread.note("pods: saturation -> first task in a new pod", time.monotonic() - saturated)
    wait_until(lambda: status(spread, POOL).get("readyPods") == 3
               and status(spread, POOL).get("busyWorkers") == 3 * PER_POD, 180, interval=0.2,
               what="3 pods and 12 busy workers")
    spread.note("pods: burst -> 3 pods, 12 workers busy", time.monotonic() - began)
    # `workerpool stats` shows the master of every pod, by the pod's name
    shown = spread.in_ns(sys.executable, "-m", "workerpool", "stats", "--queue", POOL,
                         "--redis-url", REDIS_URL).stdout
    hosts = {line.split()[1].split(":")[0] for line in shown.splitlines() if line.startswith("master ")}
    assert hosts == {p["metadata"]["name"] for p in worker_pods(spread)}, shown
    events = [e for e in spread.json("get", "events", "-n", NS)["items"]
              if e["involvedObject"]["name"] == POOL and e["reason"] == "PodsScaledOut"]
    assert any("backlog" in e["message"] for e in events), events

    wait_until(lambda: len(counts(spread, "runs:wave")) == 48, 240, interval=0.5, what="the wave served")
    # a long task pins one pod while the cooldown runs: the scale-in must keep that pod
    enqueue(spread, POOL, tasks("pin", 1, COOLDOWN_S + 25.0))
    pinned = wait_until(lambda: where(spread, "pin").get(0), 30, interval=0.2, what="the pin to start")
    ended = time.monotonic()
    wait_until(lambda: len(worker_pods(spread)) == 1 and status(spread, POOL).get("pods") == 1,
               COOLDOWN_S + 120, interval=0.5, what="back to one pod")
    spread.note("pods: burst over -> 1 pod (cooldown 15 s)", time.monotonic() - ended)
    assert [p["metadata"]["name"] for p in worker_pods(spread)] == [pinned]  # the busy one stayed
    wait_until(lambda: counts(spread, "runs:pin") == {0: 1}, COOLDOWN_S + 60, interval=0.5,
               what="the pinned task to finish")
    started, runs = counts(spread, "started:wave"), counts(spread, "runs:wave")
    assert set(started.values()) == {1} and set(runs.values()) == {1}, (started, runs)
    assert counts(spread, "started:pin") == {0: 1}  # the scale-in cut no task
    spread.note("pods: tasks interrupted or run twice by the scale-in", "0")


def test_force_deleting_a_worker_pod_mid_task_loses_nothing(spread: Cluster) -> None:
    enqueue(spread, POOL, tasks("cut", 8, 5.0))
    wait_until(lambda: len(counts(spread, "started:cut")) >= 4, 60, interval=0.2, what="tasks running")
    victim = where(spread, "cut")[next(iter(counts(spread, "started:cut")))]
    spread.kubectl("delete", "pod", "-n", NS, victim, "--grace-period=0", "--force")
    wait_until(lambda: len(counts(spread, "runs:cut")) == 8, 240, interval=0.5,
               what="all 8 tasks served after the SIGKILL")
    interrupted = sum(c > 1 for c in counts(spread, "started:cut").values())
    spread.note("pods: tasks served again after a worker pod's SIGKILL", str(interrupted))


def test_deleting_the_pool_drains_its_pods(spread: Cluster) -> None:
    enqueue(spread, POOL, tasks("last", 2, 3.0))
    wait_until(lambda: len(counts(spread, "started:last")) == 2, 60, interval=0.2, what="tasks running")
    spread.kubectl("delete", "wp", "-n", NS, POOL, "--wait=true", "--timeout=120s")
    wait_until(lambda: not spread.json("get", "pods", "-n", NS, "-l", f"workerpool.dev/pool={POOL}")["items"],
               120, interval=0.5, what="the worker pods to be gone")
    assert counts(spread, "runs:last") == {0: 1, 1: 1}  # drained: both finished, none cut
