"""A user's own image (FROM workerpool + a handler package) serving a Redis in the cluster;
the operator pod deleted while busy, gracefully and by force; a handler past the memory limit.
"""

from __future__ import annotations

import json
import sys
import time

from helpers import parse_table, wait_until
from node import Cluster
from scenario import REDIS_URL, counts, enqueue, redis, status, tasks
from test_operator_pod import NS, is_ready, operator_pods, ready_operator_pod


def test_tasks_from_outside_are_served_and_status_follows(shop: Cluster) -> None:
    enqueue(shop, "shop", tasks("burst", 300, 0.02))
    wait_until(lambda: len(counts(shop, "runs:burst")) == 300, 120, interval=0.5,
               what="300 tasks served")
    wait_until(lambda: status(shop, "shop").get("processed") == 301, 30, interval=0.5,
               what="status.processed to reach 301")
    rows = parse_table(shop.kubectl("get", "wp", "-n", NS).stdout)
    assert list(rows[0])[:12] == ["NAME", "MIN", "MAX", "PODS", "READY", "PERMANENT", "TEMPORARY",
                                  "BUSY", "BACKLOG", "PROCESSED", "FAILED", "AGE"]
    row = next(r for r in rows if r["NAME"] == "shop")
    # a pool without spec.pods runs in the operator's pod: no worker pods to show
    assert (row["MIN"], row["MAX"], row["PROCESSED"], row["PODS"]) == ("2", "4", "301", ""), rows
    ready = next(c for c in status(shop, "shop")["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    assert "10.96.0.50" not in json.dumps(shop.json("get", "wp", "-n", NS, "shop"))


def test_deleting_the_busy_operator_pod_finishes_running_tasks_and_loses_none(shop: Cluster) -> None:
    enqueue(shop, "shop", tasks("drain", 40, 1.0))
    wait_until(lambda: len(counts(shop, "started:drain")) >= 4, 30, interval=0.2,
               what="tasks running")
    old = operator_pods(shop)[0]["metadata"]["name"]
    began = time.monotonic()
    shop.kubectl("delete", "pod", "-n", NS, old, "--wait=true", "--timeout=120s")
    shop.note("kubectl delete pod (busy operator) -> gone", time.monotonic() - began)
    wait_until(lambda: ready_operator_pod(shop, not_named=old), 120, interval=0.5,
               what="a replacement operator pod Ready")
    wait_until(lambda: len(counts(shop, "runs:drain")) == 40, 120, interval=0.5,
               what="all 40 tasks served")
    # every task ran exactly once: those running at SIGTERM finished in the old pod
    assert set(counts(shop, "started:drain").values()) == {1}
    assert set(counts(shop, "runs:drain").values()) == {1}


def test_force_deleting_the_busy_operator_pod_loses_none(shop: Cluster) -> None:
    enqueue(shop, "shop", tasks("kill", 40, 3.0))  # long enough to be cut short
    wait_until(lambda: len(counts(shop, "started:kill")) >= 4, 30, interval=0.2, what="tasks running")
    old = operator_pods(shop)[0]["metadata"]["name"]
    began = time.monotonic()
    shop.kubectl("delete", "pod", "-n", NS, old, "--grace-period=0", "--force")
    wait_until(lambda: ready_operator_pod(shop, not_named=old), 120, interval=0.5,
               what="a replacement operator pod Ready")
    wait_until(lambda: len(counts(shop, "runs:kill")) == 40, 240, interval=0.5,
               what="all 40 tasks served after SIGKILL")
    shop.note("kubectl delete --grace-period=0 --force -> all 40 served", time.monotonic() - began)
    interrupted = sum(c > 1 for c in counts(shop, "started:kill").values())
    shop.note("tasks interrupted by the SIGKILL and served again", str(interrupted))


def _oom_kills(cluster: Cluster, pod: str) -> int:
    """The kernel's count of OOM kills in the container's memory cgroup (v1, else v2)."""
    text = cluster.kubectl("exec", "-n", NS, pod, "--", "sh", "-c",
                           "cat /sys/fs/cgroup/memory/memory.oom_control 2>/dev/null"
                           " || cat /sys/fs/cgroup/memory.events").stdout
    return int(dict(line.split() for line in text.splitlines())["oom_kill"])


def test_a_handler_past_the_memory_limit_costs_a_worker_never_the_operator(shop: Cluster) -> None:
    pod = ready_operator_pod(shop)
    assert pod is not None
    name = pod["metadata"]["name"]
    restarts = pod["status"]["containerStatuses"][0]["restartCount"]
    kills_before = _oom_kills(shop, name)
    enqueue(shop, "hogs", [{"mib": 3072}])  # 3 GiB, the container's limit is 1 GiB
    # maxRetries 1: two attempts, both OOM-killed, then the dead letters
    wait_until(lambda: status(shop, "hogs").get("deadLettered") == 1, 180, interval=0.5,
               what="the task in the dead letters")
    assert redis(shop, "get", "hog:attempts") == "2"
    assert redis(shop, "get", "hog:survived") == ""
    kills = _oom_kills(shop, name) - kills_before
    assert kills >= 2
    after = shop.json("get", "pod", "-n", NS, name)
    assert is_ready(after) and after["status"]["containerStatuses"][0]["restartCount"] == restarts
    events = [e for e in shop.json("get", "events", "-n", NS)["items"]
              if e["involvedObject"]["name"] == "hogs"]
    assert any(e["reason"] == "WorkerCrashed" and "SIGKILL" in e["message"] for e in events), events
    assert not any(e["reason"] == "MasterExited" for e in events), events
    wait_until(lambda: status(shop, "hogs").get("permanentWorkers") == 1, 30, interval=0.5,
               what="the hogs pool to have its worker back")
    dead = shop.in_ns(sys.executable, "-m", "workerpool", "dead", "list", "--queue", "hogs",
                      "--redis-url", REDIS_URL).stdout.strip()
    shop.note("OOM scenario", f"{kills} OOM kills in the operator's container (workers), operator "
              f"restarts {after['status']['containerStatuses'][0]['restartCount'] - restarts}, "
              f"dead letter: {dead}")
    # and the pod keeps serving
    enqueue(shop, "shop", tasks("after-oom", 20, 0))
    wait_until(lambda: len(counts(shop, "runs:after-oom")) == 20, 60, interval=0.5,
               what="20 tasks served after the OOM kills")
