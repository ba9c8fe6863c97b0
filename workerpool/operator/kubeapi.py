"""The operator's own Kubernetes API client (in-cluster ServiceAccount, else the kubeconfig)."""

from __future__ import annotations

import functools

from kubernetes import client, config


@functools.cache
def api_client() -> client.ApiClient:
    """One client for the process, configured on first use (never at import time)."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def own_namespace() -> str | None:
    """The namespace of the pod this process runs in (None outside a pod)."""
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE) as f:
            return f.read().strip()
    except OSError:
        return None
