"""The objects a WorkerPool with `spec.pods` owns, as pure functions of the pool.

A pool that spans pods is a Deployment of worker pods, each running the same `workerpool run`
master on the pool's manifest (a ConfigMap: no secret in it), keeping minWorkers..maxWorkers
worker processes. Why a Deployment rather than pods the operator creates itself: Kubernetes then
replaces a pod that dies or whose node goes away, rolls the pods when the manifest changes, and
still lets the operator pick which pods a scale-in removes
(`controller.kubernetes.io/pod-deletion-cost`, honoured by the ReplicaSet controller).

Both objects carry an ownerReference to the WorkerPool, so deleting the pool deletes them, and
every pod drains on its SIGTERM within a grace period derived from shutdownGraceSeconds.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from ..spec import API_VERSION, KIND, PodsSpec, PoolSpec

MANIFEST_DIR = "/etc/workerpool"
MANIFEST_FILE = "pool.yaml"
# After shutdownGraceSeconds the master kills what still runs and puts its tasks back: give it
# this long for that (and the kubelet's own SIGTERM delivery) before Kubernetes sends SIGKILL.
TERMINATION_MARGIN_S = 10
POOL_LABEL = "workerpool.dev/pool"
COMPONENT = {"app.kubernetes.io/name": "workerpool", "app.kubernetes.io/component": "worker-pod"}
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
METRICS_PORT = 9464  # Prometheus' port for workerpool, as the operator's metrics component uses


def workload_name(pool: str) -> str:
    """The name of the pool's Deployment and ConfigMap."""
    return f"{pool}-workers"


def selector(pool: str) -> dict[str, str]:
    """The labels every worker pod of `pool` carries (and only those)."""
    return {**COMPONENT, POOL_LABEL: pool}


def owner_reference(pool: str, uid: str) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": KIND, "name": pool, "uid": uid,
            "controller": True, "blockOwnerDeletion": True}


def config_map(spec: PoolSpec, namespace: str, uid: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """The pool's manifest for the pods' masters (the validated spec without the Redis URL)."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _metadata(spec.name, namespace, uid),
            "data": {MANIFEST_FILE: json.dumps(manifest, sort_keys=True)}}


def deployment(spec: PoolSpec, namespace: str, uid: str, manifest: dict[str, Any], image: str,
               replicas: int) -> dict[str, Any]:
    """The Deployment of worker pods; `replicas` is the operator's pod decision."""
    pods = spec.pods or PodsSpec()
    # a changed manifest rolls the pods (each new master reads it once at start)
    checksum = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _metadata(spec.name, namespace, uid),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector(spec.name)},
            "template": {
                "metadata": {"labels": selector(spec.name),
                             "annotations": {"workerpool.dev/manifest-checksum": checksum}},
                "spec": _pod_spec(spec, pods, image),
            },
        },
    }


def _metadata(pool: str, namespace: str, uid: str) -> dict[str, Any]:
    return {"name": workload_name(pool), "namespace": namespace, "labels": selector(pool),
            "ownerReferences": [owner_reference(pool, uid)]}


def _pod_spec(spec: PoolSpec, pods: PodsSpec, image: str) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "master",
        "image": pods.image or image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["run", f"{MANIFEST_DIR}/{MANIFEST_FILE}", "--log-format", "json"],
        "env": [*_redis_env(spec), {"name": "WORKERPOOL_STATE_DIR", "value": "/tmp/workerpool"},
                # each pod's master serves its own /metrics (a PodMonitor in
                # deploy/components/prometheus-operator scrapes it); nothing outside selects it
                {"name": "WORKERPOOL_METRICS_ADDRESS", "value": f":{METRICS_PORT}"},
                *(pods.env or [])],
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT}],
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "manifest", "mountPath": MANIFEST_DIR, "readOnly": True},
                         {"name": "tmp", "mountPath": "/tmp"}, *(pods.volume_mounts or [])],
    }
    if pods.resources:
        container["resources"] = pods.resources
    pod: dict[str, Any] = {
        "terminationGracePeriodSeconds": math.ceil(spec.shutdown_grace_s) + TERMINATION_MARGIN_S,
        # the masters talk to Redis only: no Kubernetes API token in a pod that runs user code
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [{"name": "manifest", "configMap": {"name": workload_name(spec.name)}},
                    {"name": "tmp", "emptyDir": {}}, *(pods.volumes or [])],
    }
    for key, value in (("serviceAccountName", pods.service_account_name),
                       ("nodeSelector", pods.node_selector), ("tolerations", pods.tolerations),
                       ("affinity", pods.affinity)):
        if value:
            pod[key] = value
    return pod


def _redis_env(spec: PoolSpec) -> list[dict[str, Any]]:
    """REDIS_URL for the pods' masters: from the Secret when the pool names one (never copied)."""
    if spec.redis_url_from is not None:
        ref = spec.redis_url_from
        return [{"name": "REDIS_URL",
                 "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}]
    if spec.redis_url:
        return [{"name": "REDIS_URL", "value": spec.redis_url}]
    return []


def deletion_costs(busy_by_pod: dict[str, int], remove: tuple[str, ...]) -> dict[str, int]:
    """pod-deletion-cost per pod: the pods chosen for removal cost least, then by busy workers."""
    return {pod: (-1 if pod in remove else busy) for pod, busy in busy_by_pod.items()}
