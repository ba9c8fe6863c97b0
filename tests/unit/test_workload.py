"""The worker-pod objects a WorkerPool with spec.pods owns: pure builders."""

from __future__ import annotations

import json

from helpers import manifest

from workerpool.operator import workload
from workerpool.spec import manifest_of, parse_manifest

SECRET_POOL = parse_manifest(manifest(
    "emails", handler="app.tasks:send", shutdownGraceSeconds=45, maxWorkers=4,
    redis={"urlFrom": {"secretKeyRef": {"name": "redis", "key": "url"}}},
    pods={"min": 1, "max": 3, "resources": {"limits": {"memory": "512Mi"}},
          "nodeSelector": {"pool": "batch"}, "env": [{"name": "APP_MODE", "value": "prod"}],
          "volumes": [{"name": "conf", "configMap": {"name": "app"}}],
          "volumeMounts": [{"name": "conf", "mountPath": "/conf"}]}))


def build(spec=SECRET_POOL, image="localhost/workerpool:0.1.0", replicas=2):
    return workload.deployment(spec, "ns", "uid-1", manifest_of(spec), image, replicas)


def test_owned_by_the_pool_and_selected_by_its_labels():
    dep = build()
    assert dep["metadata"]["ownerReferences"] == [{
        "apiVersion": "workerpool.dev/v1alpha1", "kind": "WorkerPool", "name": "emails",
        "uid": "uid-1", "controller": True, "blockOwnerDeletion": True}]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"] == labels
    assert labels["workerpool.dev/pool"] == "emails" and dep["spec"]["replicas"] == 2


def test_the_redis_url_comes_from_the_secret_never_from_the_configmap_or_args():
    dep = build()
    container = dep["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["REDIS_URL"]["valueFrom"] == {"secretKeyRef": {"name": "redis", "key": "url"}}
    cm = workload.config_map(SECRET_POOL, "ns", "uid-1", manifest_of(SECRET_POOL))
    assert "redis" not in json.loads(cm["data"]["pool.yaml"])["spec"]
    assert "pods" not in json.loads(cm["data"]["pool.yaml"])["spec"]  # a pod's master ignores it
    assert not any("redis" in a for a in container["args"])


def test_the_pod_is_restricted_and_drains_within_its_grace():
    pod = build()["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 45 + workload.TERMINATION_MARGIN_S
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = pod["containers"][0]["securityContext"]
    assert sc == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                  "capabilities": {"drop": ["ALL"]}}


def test_the_users_pod_shape_is_passed_through():
    pod = build()["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"] == {"limits": {"memory": "512Mi"}}
    assert pod["nodeSelector"] == {"pool": "batch"}
    assert {"name": "APP_MODE", "value": "prod"} in container["env"]
    assert {"name": "conf", "mountPath": "/conf"} in container["volumeMounts"]
    assert {"name": "conf", "configMap": {"name": "app"}} in pod["volumes"]
    assert container["image"] == "localhost/workerpool:0.1.0"  # default: the operator's own
    # each pod's master serves /metrics for the worker-pod PodMonitor
    assert container["ports"] == [{"name": "metrics", "containerPort": 9464}]
    assert {"name": "WORKERPOOL_METRICS_ADDRESS", "value": ":9464"} in container["env"]


def test_a_changed_manifest_rolls_the_pods_and_a_replica_change_does_not():
    checksum = build()["spec"]["template"]["metadata"]["annotations"]
    assert build(replicas=3)["spec"]["template"]["metadata"]["annotations"] == checksum
    bigger = parse_manifest({**manifest("emails", handler="app.tasks:send", maxWorkers=8,
                                        redis={"url": "redis://r:6379/0"}, pods={"max": 2})})
    assert build(bigger)["spec"]["template"]["metadata"]["annotations"] != checksum


def test_deletion_costs_put_the_chosen_pods_first():
    assert workload.deletion_costs({"a": 3, "b": 0, "c": 1}, ("b",)) == {"a": 3, "b": -1, "c": 1}
