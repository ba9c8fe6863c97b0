"""kopf handlers: translate between WorkerPool objects and the pools (no pool logic here).

Importing this module registers every handler with kopf: the operator's settings and
lifecycle here, each pool's master daemon (`master_daemon`), the status timer of the pools
in the operator's pod (`master_status`), and the pod-scaling timer of those in worker pods
(`pod_timer`).
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from ..spec import manifest_of
from . import master_daemon, master_status, pod_timer, podpools
from .crd import GROUP, RESOURCE
from .pool_state import in_pods, pool_state, registry, resolve, validate
from .readiness import Watched, wait_until_served

__all__ = ["master_daemon", "master_status", "pod_timer"]  # imported for their kopf handlers

#: kopf's watch requests: the API server ends each within this, and the client gives up on a
#: silent connection a little later, so a half-dead connection is replaced, not waited on forever
WATCH_SERVER_TIMEOUT_S = 120
WATCH_CLIENT_TIMEOUT_S = 150
#: a deleted pool keeps its finalizer until its daemon has drained the master; kopf looks again
#: this often (it touches the object to do so): its default of 60 s would hold a drained pool
#: for a minute
DRAIN_POLL_S = 1.0


class _OwnLinesOnly(logging.Filter):
    """kopf logs every handler and timer run ("succeeded") at INFO per object: once a second per
    pool is noise. Keep kopf's own WARNING and above, and every line our handlers log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or "/kopf/" not in record.pathname


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # we own .status: kopf keeps its bookkeeping in annotations, not in status
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration")
    settings.persistence.finalizer = f"{GROUP}/drain"
    # no cluster-wide scanning of namespaces and CRDs: the operator watches exact namespaces,
    # so a namespaced Role is all the RBAC it needs (least privilege)
    settings.scanning.disabled = True
    # what our handlers log through kopf's per-object logger becomes an Event on the pool too
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = WATCH_SERVER_TIMEOUT_S
    settings.watching.client_timeout = WATCH_CLIENT_TIMEOUT_S
    settings.background.cancellation_polling = DRAIN_POLL_S
    logging.getLogger("kopf.objects").addFilter(_OwnLinesOnly())
    # the health endpoint logs every probe (the readiness probe's every 5 s)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


@kopf.on.startup()
async def wait_for_api(memo: kopf.Memo, **_: Any) -> None:
    """Start watching only once the WorkerPool API answers (no ERROR on a fresh install)."""
    watched = memo.get("watched")
    if isinstance(watched, Watched):
        await wait_until_served(watched)


@kopf.on.probe(id="pools")
def pools_running(memo: kopf.Memo, **_: Any) -> int:
    """The health endpoint's body: how many masters this operator runs."""
    return len(registry(memo).running)


@kopf.on.cleanup()
def drain_all(memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    """The operator is stopping: drain every master a daemon has not drained yet, all at once."""
    masters = registry(memo)
    if masters.running:
        logger.info(f"operator stopping: draining {len(masters.running)} pool(s)")
    masters.stop_all()


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
def start(name: str, namespace: str, spec: kopf.Spec, uid: str, logger: kopf.Logger,
          **_: Any) -> None:
    """Refuse a bad spec at once; apply a pod pool's workload (a master pool's daemon starts it)."""
    parsed = validate(name, dict(spec))
    if parsed.pods is not None:
        replicas = podpools.apply_workload(parsed, namespace, uid, manifest_of(parsed), None)
        logger.info(f"worker pods applied: {replicas} pod(s) for queue {parsed.queue}")


@kopf.on.update(*RESOURCE, field="spec")
def update(name: str, namespace: str, spec: kopf.Spec, body: kopf.Body, uid: str, old: Any,
           memo: kopf.Memo, **_: Any) -> None:
    """Apply an edit: a pod pool's workload here, a master pool's by waking its daemon."""
    parsed, _target = resolve(name, namespace, dict(spec))  # a bad edit fails here, loudly
    where = ""
    if in_pods(spec):  # the pool runs (or now moves) into worker pods; kopf stops its daemon
        replicas = podpools.apply_workload(parsed, namespace, uid, manifest_of(parsed), None)
        where = f" in {replicas} worker pod(s)"
    else:
        if (old or {}).get("pods") is not None:  # it left spec.pods: back into the operator's pod
            podpools.delete_workload(namespace, name)
        pool_state(memo).wake.set()
    kopf.info(body, reason="Reconfigured",
              message=f"min={parsed.min_workers} max={parsed.max_workers}{where}")
