"""Read a key of a Secret with the operator's own credentials (in-cluster or kubeconfig)."""

from __future__ import annotations

import base64

import kopf
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .kubeapi import api_client

#: a Secret (or its key) that is missing may be created later: look again after this
SECRET_RETRY_S = 10.0


def _core() -> client.CoreV1Api:
    return client.CoreV1Api(api_client())


def read_secret_key(namespace: str, name: str, key: str) -> str:
    """The decoded value; a missing Secret or key is a TemporaryError (it may appear later)."""
    try:
        secret = _core().read_namespaced_secret(name, namespace)
    except ApiException as e:
        raise kopf.TemporaryError(f"spec.redis.urlFrom: cannot read Secret {namespace}/{name}: "
                                  f"{e.status} {e.reason}", delay=SECRET_RETRY_S) from None
    data = secret.data or {}
    if key not in data:
        raise kopf.TemporaryError(f"spec.redis.urlFrom: Secret {namespace}/{name} has no key "
                                  f"{key!r}", delay=SECRET_RETRY_S)
    return base64.b64decode(data[key]).decode()
