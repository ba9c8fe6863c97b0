"""spec.pods against a real kube-apiserver: the worker-pod objects the operator writes.

No controller-manager or kubelet runs in this tier, so the Deployment creates no pods: these
tests check the objects, their ownership, secrets and security, and the operator's RBAC.
What the pods do is tested on the real single-node cluster (tests/cluster).
"""

from __future__ import annotations

import json
from typing import Any

import test_operator
import yaml
from helpers import parse_table, wait_until
from test_operator import NS, Operator, apply, get, pool_doc

from workerpool.spec import parse_manifest

# the module-scoped fixtures of test_operator: deploy/ applied, one operator for the module
cluster = test_operator.cluster
operator = test_operator.operator


def kube_json(cluster: Any, *args: str) -> dict[str, Any] | None:
    done = cluster.kubectl("get", *args, "-n", NS, "-o", "json", check=False)
    return json.loads(done.stdout) if done.returncode == 0 else None


def test_a_pool_with_pods_is_a_deployment_it_owns(operator: Operator, cluster: Any,
                                                   redis_server: Any) -> None:
    url = redis_server.url.replace("redis://", "redis://:pods-secret-pw@")
    cluster.kubectl("create", "secret", "generic", "pods-redis", "-n", NS, f"--from-literal=url={url}")
    doc = pool_doc("spread", None, minWorkers=1, maxWorkers=4, shutdownGraceSeconds=20)
    doc["spec"]["redis"] = {"urlFrom": {"secretKeyRef": {"name": "pods-redis", "key": "url"}}}
    doc["spec"]["pods"] = {"min": 2, "max": 3, "image": "localhost/workerpool:test",
                           "nodeSelector": {"pool": "batch"}}
    apply(cluster, doc)

    wait_until(lambda: kube_json(cluster, "deployment", "spread-workers") is not None, 30,
               what="the worker-pod Deployment; log:\n" + operator.log()[-2000:])
    dep = kube_json(cluster, "deployment", "spread-workers")
    assert dep is not None
    pool = get(cluster, "spread")
    assert dep["metadata"]["ownerReferences"] == [{
        "apiVersion": "workerpool.dev/v1alpha1", "kind": "WorkerPool", "name": "spread",
        "uid": pool["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 30 and pod["nodeSelector"] == {"pool": "batch"}
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "pods-redis", "key": "url"}

    cm = kube_json(cluster, "configmap", "spread-workers")
    assert cm is not None
    assert parse_manifest(yaml.safe_load(cm["data"]["pool.yaml"])).handler == "handlers:record"
    for shown in (json.dumps(dep), json.dumps(cm), json.dumps(get(cluster, "spread")), operator.log()):
        assert "pods-secret-pw" not in shown
    assert operator.workers("spread") == []  # no master in the operator's own pod

    wait_until(lambda: get(cluster, "spread").get("status", {}).get("pods") == 2, 15,
               what="status.pods")
    ready = {c["type"]: c for c in get(cluster, "spread")["status"]["conditions"]}["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "Starting")  # no kubelet: no master yet
    row = parse_table(cluster.kubectl("get", "wp", "spread", "-n", NS).stdout)[0]
    assert (row["PODS"], row["READY"], row["PERMANENT"]) == ("2", "0", "0")

    # the worker pod passes Pod Security "restricted" (the namespace enforces it)
    candidate = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "wp-psa", "namespace": NS},
                 "spec": pod}
    cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(candidate))

    # a spec edit applies at once: max 1 brings the replicas down to 1
    doc["spec"]["pods"] = {"min": 1, "max": 1, "image": "localhost/workerpool:test"}
    apply(cluster, doc)
    wait_until(lambda: (kube_json(cluster, "deployment", "spread-workers") or {})
               .get("spec", {}).get("replicas") == 1, 15, what="replicas 1 after the edit")
    dep = kube_json(cluster, "deployment", "spread-workers")
    assert dep is not None and "nodeSelector" not in dep["spec"]["template"]["spec"]  # replaced

    # leaving spec.pods: the Deployment goes and the pool runs in the operator's pod again
    del doc["spec"]["pods"]
    cluster.kubectl("patch", "wp", "spread", "-n", NS, "--type=json",
                    "-p", '[{"op": "remove", "path": "/spec/pods"}]')
    wait_until(lambda: kube_json(cluster, "deployment", "spread-workers") is None, 15,
               what="the Deployment to be deleted")
    wait_until(lambda: len(operator.workers("spread")) == 1, 30, what="a local worker")
    cluster.kubectl("delete", "wp", "spread", "-n", NS, "--wait=true", "--timeout=60s")
