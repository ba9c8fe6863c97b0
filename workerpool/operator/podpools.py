"""Pools that span pods: the operator's level (pods, seconds) over the masters' (processes, ms).

The worker pods' masters publish their numbers in Redis like any master; the operator reads
them, decides the pod count with the pure `pod_scaling.decide_pods`, marks the idlest pods
cheapest to delete before it lowers the Deployment's replicas, and writes the status.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import kopf
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..protocol import MasterReport
from ..spec import PoolSpec
from . import workload
from .kubeapi import api_client, own_namespace
from .pod_scaling import PodBounds, PodDecision, PodSeen, Timers, decide_pods

#: a write the API server refused (conflict, throttling, a restart) is retried after this by kopf
API_RETRY_S = 5.0


# Typed as Any: we hand the client plain dicts (the builders in workload.py are pure), which it
# sends as they are; its annotations ask for its model classes.
def _apps() -> Any:
    return client.AppsV1Api(api_client())


def _core() -> Any:
    return client.CoreV1Api(api_client())


def own_image() -> str:
    """The image worker pods run by default: WORKERPOOL_IMAGE, else the operator pod's own."""
    image = os.environ.get("WORKERPOOL_IMAGE")
    if image:
        return image
    pod, namespace = os.environ.get("POD_ID") or os.environ.get("HOSTNAME"), own_namespace()
    if pod and namespace:
        try:
            return str(_core().read_namespaced_pod(pod, namespace).spec.containers[0].image)
        except ApiException:
            pass
    raise kopf.PermanentError("spec.pods.image: required when the operator does not run in a pod "
                              "(or set WORKERPOOL_IMAGE)")


def apply_workload(spec: PoolSpec, namespace: str, uid: str, manifest: dict[str, Any],
                   replicas: int | None) -> int:
    """Create or update the pool's ConfigMap and Deployment; return the replicas it has now.

    `replicas` None keeps the Deployment's current count (or pods.min for a new one): a spec
    edit must not undo a scale-out the operator decided.
    """
    cm = workload.config_map(spec, namespace, uid, manifest)
    name = workload.workload_name(spec.name)
    try:
        _core().replace_namespaced_config_map(name, namespace, cm)
    except ApiException as e:
        if e.status != 404:
            raise _temporary("ConfigMap", namespace, name, e) from None
        _core().create_namespaced_config_map(namespace, cm)
    existing = _read_deployment(namespace, spec.name)
    assert spec.pods is not None
    now = int(existing.spec.replicas or 0) if existing is not None else spec.pods.min_pods
    count = min(max(replicas if replicas is not None else now, spec.pods.min_pods), spec.pods.max_pods)
    body = workload.deployment(spec, namespace, uid, manifest, own_image_for(spec), count)
    try:
        if existing is None:
            _apps().create_namespaced_deployment(namespace, body)
        else:
            # a replace, not a merge: an env var or volume the user removed must go
            body["metadata"]["resourceVersion"] = existing.metadata.resource_version
            _apps().replace_namespaced_deployment(name, namespace, body)
    except ApiException as e:
        raise _temporary("Deployment", namespace, name, e) from None
    return count


def own_image_for(spec: PoolSpec) -> str:
    return spec.pods.image if spec.pods and spec.pods.image else own_image()


def _read_deployment(namespace: str, pool: str) -> Any:
    try:
        return _apps().read_namespaced_deployment(workload.workload_name(pool), namespace)
    except ApiException as e:
        if e.status == 404:
            return None
        raise _temporary("Deployment", namespace, workload.workload_name(pool), e) from None


def delete_workload(namespace: str, pool: str) -> None:
    """The pool left spec.pods: its worker pods go (each drains on SIGTERM)."""
    name = workload.workload_name(pool)
    for delete in (_apps().delete_namespaced_deployment, _core().delete_namespaced_config_map):
        try:
            delete(name, namespace)
        except ApiException as e:
            if e.status != 404:
                raise _temporary("workload", namespace, name, e) from None


@dataclass(frozen=True, slots=True)
class PodsNow:
    """One look at a pool's worker pods, joined with what their masters publish."""

    seen: list[PodSeen]  # the pods that exist, then one per pod the Deployment still creates
    masters: list[MasterReport]  # the published numbers of the masters in these pods
    existing: frozenset[str]  # the names of the pods that exist


def look(namespace: str, pool: str, published: Iterable[MasterReport]) -> PodsNow | None:
    """The pool's worker pods as the Deployment wants them, joined with their masters' numbers.

    A pod is ready once its master publishes; a pod the Deployment wants but that does not
    exist yet counts as starting, so a scale-out is not repeated while its pods are created.
    None while the Deployment itself does not exist (the create handler has not run yet).
    """
    dep = _read_deployment(namespace, pool)
    if dep is None:
        return None
    replicas = int(dep.spec.replicas or 0)
    selector = ",".join(f"{k}={v}" for k, v in workload.selector(pool).items())
    pods = _core().list_namespaced_pod(namespace, label_selector=selector).items
    by_host = {m.host: m for m in published}
    seen, masters = [], []
    for pod in pods:
        if pod.metadata.deletion_timestamp is not None:
            continue  # draining: neither capacity nor a candidate for removal
        master = by_host.get(pod.metadata.name)
        if master is not None:
            masters.append(master)
        seen.append(PodSeen(pod.metadata.name, master is not None,
                            master.busy if master else 0))
    existing = frozenset(p.name for p in seen)
    seen += [PodSeen(f"(pod {i} being created)", False, 0) for i in range(len(seen), replicas)]
    return PodsNow(seen, masters, existing)


def scale(spec: PoolSpec, namespace: str, now: PodsNow, waiting: int, timers: Timers,
          at: float) -> tuple[PodDecision, Timers]:
    """Decide and apply: mark the pods to remove cheapest, then set the replicas."""
    assert spec.pods is not None
    bounds = PodBounds(spec.pods.min_pods, spec.pods.max_pods, spec.max_workers,
                       spec.pods.stabilization_s, spec.pods.cooldown_s)
    decision, timers = decide_pods(now.seen, waiting, bounds, timers, at)
    if decision.desired == len(now.seen):
        return decision, timers
    if decision.remove:
        costs = workload.deletion_costs({p.name: p.busy for p in now.seen if p.name in now.existing},
                                        decision.remove)
        for pod, cost in costs.items():
            patch = {"metadata": {"annotations": {workload.DELETION_COST: str(cost)}}}
            try:
                _core().patch_namespaced_pod(pod, namespace, patch)
            except ApiException as e:
                if e.status != 404:  # a pod that is already gone needs no cost
                    raise _temporary("Pod", namespace, pod, e) from None
    name = workload.workload_name(spec.name)
    try:
        _apps().patch_namespaced_deployment_scale(name, namespace, {"spec": {"replicas": decision.desired}})
    except ApiException as e:
        raise _temporary("Deployment scale", namespace, name, e) from None
    return decision, timers


def _temporary(what: str, namespace: str, name: str, e: ApiException) -> kopf.TemporaryError:
    return kopf.TemporaryError(f"cannot write {what} {namespace}/{name}: {e.status} {e.reason}",
                               delay=API_RETRY_S)
