"""When the operator starts serving: only once the API server serves WorkerPools.

`kubectl apply -k deploy/` creates the CRD and the Deployment in one go, so the operator's
first list of WorkerPools can arrive before the CRD is established (404) or while the API
server is still building its storage (429 "storage is (re)initializing"). kopf would log that
as an ERROR and retry. Instead, a startup handler waits here until one list succeeds: kopf
starts its watches and its health endpoint only after the startup handlers, so the
readiness probe on that endpoint means "the operator is serving".
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from .. import logs
from .crd import GROUP, PLURAL, VERSION
from .kubeapi import api_client

POLL_INTERVAL_S = 0.5
QUIET_S = 10.0  # a CRD that is still not served after this long is worth a WARNING


@dataclass(frozen=True, slots=True)
class Watched:
    """What the operator watches: exact namespaces, or every namespace."""

    namespaces: tuple[str, ...]
    clusterwide: bool


def _list_once(watched: Watched) -> None:
    api = client.CustomObjectsApi(api_client())
    if watched.clusterwide:
        api.list_cluster_custom_object(GROUP, VERSION, PLURAL, limit=1)
        return
    for namespace in watched.namespaces:
        api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, limit=1)


def _why(error: Exception) -> str:
    if isinstance(error, ApiException):
        return f"{error.status} {error.reason}"
    return type(error).__name__


async def wait_until_served(watched: Watched) -> None:
    """Return once WorkerPools can be listed where the operator watches; poll until then."""
    began = time.monotonic()
    reported = 0.0
    while True:
        try:
            await asyncio.to_thread(_list_once, watched)
        except (ApiException, HTTPError, OSError) as e:
            waited = time.monotonic() - began
            if waited - reported >= QUIET_S or reported == 0.0:
                reported = waited or POLL_INTERVAL_S
                logs.event("waiting for the API server to serve WorkerPools",
                           level=logging.WARNING if waited >= QUIET_S else logging.INFO,
                           resource=f"{PLURAL}.{GROUP}/{VERSION}", reason=_why(e),
                           waited_s=round(waited, 1))
            await asyncio.sleep(POLL_INTERVAL_S)
            continue
        logs.event("WorkerPools are served", waited_s=round(time.monotonic() - began, 1))
        return
