"""deploy/ as shipped, on a real node: `kubectl apply -k deploy/` with the image loaded."""

from __future__ import annotations

import datetime
import json
import time
from typing import Any

from helpers import ROOT, wait_until
from node import Cluster

NS = "workerpool"
OPERATOR = "app.kubernetes.io/name=workerpool-operator"


def operator_pods(cluster: Cluster) -> list[dict[str, Any]]:
    pods = cluster.json("get", "pods", "-n", NS, "-l", OPERATOR)["items"]
    return [p for p in pods if "deletionTimestamp" not in p["metadata"]]


def is_ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in pod.get("status", {}).get("conditions", []))


def ready_operator_pod(cluster: Cluster, not_named: str = "") -> dict[str, Any] | None:
    return next((p for p in operator_pods(cluster)
                 if is_ready(p) and p["metadata"]["name"] != not_named), None)


def running_for_s(pod: dict[str, Any]) -> float:
    started = pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
    since = datetime.datetime.fromisoformat(started.replace("Z", "+00:00"))
    return (datetime.datetime.now(datetime.UTC) - since).total_seconds()


def test_deploy_runs_the_operator_ready_restricted_read_only_as_10001(cluster: Cluster) -> None:
    began = time.monotonic()
    applied = cluster.kubectl("apply", "-k", str(ROOT / "deploy"))
    # the namespace also *warns* on restricted: a pod spec that breaks it would print one
    assert "Warning" not in applied.stderr, applied.stderr
    pod = wait_until(lambda: ready_operator_pod(cluster), 180, interval=0.2,
                     what="the operator pod to be Ready")
    cluster.note("kubectl apply -k deploy/ -> operator pod Ready", time.monotonic() - began)
    name = pod["metadata"]["name"]

    labels = cluster.json("get", "namespace", NS)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    events = cluster.json("get", "events", "-n", NS)["items"]
    assert not [e for e in events if e["reason"] in ("FailedCreate", "Failed", "BackOff")], events

    # Ready means serving: the health endpoint answers with the probe's body
    health = cluster.in_ns("curl", "-sf", f"http://{pod['status']['podIP']}:8080/healthz").stdout
    assert json.loads(health) == {"pools": 0}

    out = cluster.kubectl("exec", "-n", NS, name, "--", "sh", "-c",
                          "id -u; id -g; id -un; touch /app/x; touch /x; touch /tmp/x && echo tmp ok",
                          check=False)
    lines = (out.stdout + out.stderr).splitlines()
    assert lines[:3] == ["10001", "10001", "workerpool"], lines
    assert sum("Read-only file system" in line for line in lines) == 2, lines
    assert "tmp ok" in lines

    # no ERROR on a first start: the CRD arrives in the same apply as the operator
    log = cluster.kubectl("logs", "-n", NS, name).stdout
    assert "ERROR" not in log and "Traceback" not in log, log[-3000:]

    # 0 restarts over two liveness periods (after the initial delay)
    probe = cluster.json("get", "deployment", "-n", NS, "workerpool-operator")[
        "spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
    span = probe["initialDelaySeconds"] + 2 * probe["periodSeconds"] + 5
    wait_until(lambda: running_for_s(cluster.json("get", "pod", "-n", NS, name)) >= span,
               span + 60, interval=1, what=f"{span} s of the operator running")
    pod = cluster.json("get", "pod", "-n", NS, name)
    assert is_ready(pod)
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    # (a readiness probe may fail once while the process starts: that is what it is for)
    failed = [e["message"] for e in cluster.json("get", "events", "-n", NS)["items"]
              if e["reason"] == "Unhealthy" and e["message"].startswith("Liveness")]
    assert not failed, failed
    cluster.note(f"operator restarts over {span} s", "0")
