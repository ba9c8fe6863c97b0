"""The WorkerPool CustomResourceDefinition, generated from workerpool.spec.FIELDS.

    python -m workerpool.operator.crd > deploy/crd.yaml

A test checks that deploy/crd.yaml is exactly this output, so the CRD schema and the local
validator cannot drift apart.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from ..spec import API_VERSION, KIND, QUEUE_MAX_LENGTH, QUEUE_PATTERN, REF_PATTERN, openapi_schema

GROUP, VERSION = API_VERSION.split("/")
PLURAL = "workerpools"
RESOURCE = (GROUP, VERSION, PLURAL)  # what every kopf handler of ours is registered for

_COUNTERS = {
    "permanentWorkers": "permanent workers alive",
    "temporaryWorkers": "temporary workers alive",
    "busyWorkers": "workers running a task",
    "backlog": "tasks waiting in the queue",
    "processed": "tasks served successfully (all time)",
    "failed": "failed attempts (all time)",
    "deadLettered": "tasks in the dead letters now",
    "pods": "worker pods wanted (spec.pods only)",
    "readyPods": "worker pods whose master is serving (spec.pods only)",
}


def spec_schema() -> dict[str, Any]:
    schema = openapi_schema()
    props = schema["properties"]
    props["handler"]["pattern"] = REF_PATTERN
    props["errorHandler"]["pattern"] = REF_PATTERN
    props["queue"].update(minLength=1, maxLength=QUEUE_MAX_LENGTH, pattern=QUEUE_PATTERN)
    props["redis"] = _redis_schema()
    props["pods"]["x-kubernetes-validations"] = [
        {"rule": "self.min <= self.max", "message": "spec.pods.min must not exceed spec.pods.max",
         "fieldPath": ".min", "reason": "FieldValueInvalid"}]
    schema["x-kubernetes-validations"] = [
        {"rule": "self.minWorkers <= self.maxWorkers",
         "message": "spec.minWorkers must not exceed spec.maxWorkers",
         "fieldPath": ".minWorkers", "reason": "FieldValueInvalid"},
        {"rule": "self.retryDelaySeconds <= self.retryDelayMaxSeconds",
         "message": "spec.retryDelaySeconds must not exceed spec.retryDelayMaxSeconds",
         "fieldPath": ".retryDelaySeconds", "reason": "FieldValueInvalid"},
    ]
    return schema


def _redis_schema() -> dict[str, Any]:
    non_empty = {"type": "string", "minLength": 1}
    return {
        "type": "object",
        "description": "where the queue lives: url, or urlFrom a Secret (never shown in status)",
        "properties": {
            "url": {"type": "string", "pattern": r"^(rediss?(\+sentinel|\+cluster)?|unix)://",
                    "description": "redis://, rediss://, unix://, redis+sentinel:// or redis+cluster:// URL"},
            "urlFrom": {"type": "object", "required": ["secretKeyRef"], "properties": {
                "secretKeyRef": {"type": "object", "required": ["name", "key"], "properties": {
                    "name": non_empty, "key": non_empty}}}},
        },
        "x-kubernetes-validations": [
            {"rule": "!(has(self.url) && has(self.urlFrom))",
             "message": "give one of spec.redis.url or spec.redis.urlFrom, not both"}],
    }


def status_schema() -> dict[str, Any]:
    props: dict[str, Any] = {"observedGeneration": {"type": "integer"}}
    props.update({k: {"type": "integer", "description": d} for k, d in _COUNTERS.items()})
    props["conditions"] = {
        "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
        "items": {"type": "object", "required": ["type", "status"], "properties": {
            "type": {"type": "string"},
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "reason": {"type": "string"}, "message": {"type": "string"},
            "observedGeneration": {"type": "integer"},
            "lastTransitionTime": {"type": "string", "format": "date-time"}}}}
    return {"type": "object", "properties": props}


def _column(name: str, path: str, kind: str = "integer") -> dict[str, str]:
    return {"name": name, "type": kind, "jsonPath": path}


def crd() -> dict[str, Any]:
    columns = [_column("Min", ".spec.minWorkers"), _column("Max", ".spec.maxWorkers"),
               # worker pods wanted and ready: empty for a pool that runs in the operator's pod
               _column("Pods", ".status.pods"), _column("Ready", ".status.readyPods"),
               _column("Permanent", ".status.permanentWorkers"),
               _column("Temporary", ".status.temporaryWorkers"),
               _column("Busy", ".status.busyWorkers"), _column("Backlog", ".status.backlog"),
               _column("Processed", ".status.processed"), _column("Failed", ".status.failed"),
               _column("Age", ".metadata.creationTimestamp", "date")]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"kind": KIND, "listKind": f"{KIND}List", "plural": PLURAL,
                      "singular": KIND.lower(), "shortNames": ["wp"]},
            "versions": [{
                "name": VERSION, "served": True, "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": columns,
                "schema": {"openAPIV3Schema": {
                    "type": "object", "required": ["spec"],
                    "properties": {"spec": spec_schema(), "status": status_schema()}}},
            }],
        },
    }


def render() -> str:
    header = "# Generated by `python -m workerpool.operator.crd` from workerpool/spec.py. Do not edit.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=100)


if __name__ == "__main__":
    sys.stdout.write(render())
