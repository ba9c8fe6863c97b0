"""kopf handlers: translate between WorkerPool objects and the masters (no pool logic here)."""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

import kopf
import redis

from .. import logs
from ..errors import SpecError
from ..protocol import Keys
from ..queue import connect, read_stats
from ..spec import PoolSpec, parse_spec, redact_url
from . import podpools
from . import status as st
from .crd import GROUP, PLURAL, VERSION
from .masters import Masters, manifest_of
from .pod_scaling import Timers
from .readiness import Watched, wait_until_served
from .secrets import read_secret_key

STATUS_INTERVAL_S = 1.0
RESTART_BACKOFF_S = 5.0  # a master that exited is restarted after this
MASTERS = Masters(Path(os.environ.get("WORKERPOOL_STATE_DIR", "/tmp/workerpool")))
_RESOURCE = (GROUP, VERSION, PLURAL)


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
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    # kopf logs every timer run ("succeeded") at INFO: once a second per pool is noise
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    # and the health endpoint logs every probe (the readiness probe's every 5 s)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


@kopf.on.startup()
async def wait_for_api(memo: kopf.Memo, **_: Any) -> None:
    """Start watching only once the WorkerPool API answers (no ERROR on a fresh install)."""
    watched = memo.get("watched")
    if isinstance(watched, Watched):
        await wait_until_served(watched)


@kopf.on.probe(id="pools")
def pools_running(**_: Any) -> int:
    """The health endpoint's body: how many masters this operator runs."""
    return len(MASTERS.running)


@kopf.on.cleanup()
def drain_all(logger: logging.Logger, **_: Any) -> None:
    """The operator is stopping (SIGTERM from Kubernetes): drain every pool."""
    logs.event("operator stopping: draining every pool", pools=len(MASTERS.running))
    MASTERS.stop_all()


def _key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def pool_spec(name: str, namespace: str, spec: dict[str, Any]) -> tuple[PoolSpec, str]:
    """Validate with the local validator and resolve the Redis URL (maybe from a Secret)."""
    try:
        parsed = parse_spec(name, dict(spec))
    except SpecError as e:
        raise kopf.PermanentError(str(e)) from None
    if parsed.redis_url:
        return parsed, parsed.redis_url
    if parsed.redis_url_from:
        ref = parsed.redis_url_from
        return parsed, read_secret_key(namespace, ref.name, ref.key)
    raise kopf.PermanentError("spec.redis: give url or urlFrom.secretKeyRef")


@kopf.on.resume(*_RESOURCE)
@kopf.on.create(*_RESOURCE)
def start(name: str, namespace: str, spec: dict[str, Any], uid: str, logger: logging.Logger,
          **_: Any) -> None:
    parsed, url = pool_spec(name, namespace, spec)
    if parsed.pods is not None:
        replicas = podpools.apply_workload(parsed, namespace, uid, manifest_of(parsed), None)
        logs.event("worker pods applied", pool=_key(namespace, name), pods=replicas, queue=parsed.queue)
        return
    master = MASTERS.start(_key(namespace, name), parsed, url)
    logs.event("master started", pool=_key(namespace, name), master=master.pid, queue=parsed.queue,
               redis=redact_url(url))


@kopf.on.update(*_RESOURCE, field="spec")
def update(name: str, namespace: str, spec: dict[str, Any], body: kopf.Body, uid: str,
           old: Any, logger: logging.Logger, **_: Any) -> None:
    parsed, url = pool_spec(name, namespace, spec)
    if parsed.pods is not None:  # the pool runs (or now moves) into worker pods
        MASTERS.stop(_key(namespace, name))
        replicas = podpools.apply_workload(parsed, namespace, uid, manifest_of(parsed), None)
        kopf.info(body, reason="Reconfigured",
                  message=f"min={parsed.min_workers} max={parsed.max_workers} in {replicas} worker pod(s)")
        return
    if (old or {}).get("pods") is not None:  # it left spec.pods: back into the operator's pod
        podpools.delete_workload(namespace, name)
    master = MASTERS.reconfigure(_key(namespace, name), parsed, url)
    kopf.info(body, reason="Reconfigured",
              message=f"min={parsed.min_workers} max={parsed.max_workers} (master pid {master.pid})")


@kopf.on.delete(*_RESOURCE)
def delete(name: str, namespace: str, logger: logging.Logger, **_: Any) -> None:
    code = MASTERS.stop(_key(namespace, name))
    logs.event("pool deleted and drained", pool=_key(namespace, name), master_exit_code=code)


@kopf.timer(*_RESOURCE, interval=STATUS_INTERVAL_S)
def publish_status(name: str, namespace: str, spec: dict[str, Any], meta: kopf.Meta,
                   status: kopf.Status, body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo,
                   **_: Any) -> None:
    """Turn what the master publishes in Redis into .status, conditions and Events."""
    if spec.get("pods") is not None:
        _publish_pod_status(name, namespace, spec, meta, status, body, patch, memo)
        return
    key = _key(namespace, name)
    master = MASTERS.running.get(key)
    problem = _restart_if_exited(key, master, name, namespace, spec, body)
    master = MASTERS.running.get(key)
    counters: dict[str, int] = {}
    if master is not None:
        try:
            url, client = memo.get("redis", (None, None))
            if url != master.redis_url:  # first run, or the pool moved to another Redis
                client = connect(master.redis_url, socket_timeout=2)
                memo["redis"] = (master.redis_url, client)
            stats = read_stats(client, Keys(master.spec.queue))
            counters = st.counts(stats, master.pid, socket.gethostname())
            pid, seen = memo.get("crashes", (None, 0))  # a new master counts from 0
            crashes, message = st.crash_event(stats, master.pid, socket.gethostname(),
                                              seen if pid == master.pid else 0)
            memo["crashes"] = (master.pid, crashes)
            if message:
                kopf.warn(body, reason="WorkerCrashed", message=message)
        except redis.RedisError as e:
            problem = problem or ("RedisUnavailable", f"cannot read the queue's Redis: {type(e).__name__}")
    for reason, message in st.scale_events(memo.get("counters", {}), counters):
        kopf.info(body, reason=reason, message=message)
    memo["counters"] = counters
    generation = int(meta.get("generation") or 0)
    wanted = {**counters, "observedGeneration": generation,
              "conditions": st.conditions(problem, generation, status.get("conditions"))}
    # only what changed: an idle pool costs the API server no write at all
    patch.status.update(st.changed(status, wanted))


def _restart_if_exited(key: str, master: Any, name: str, namespace: str, spec: dict[str, Any],
                       body: kopf.Body) -> tuple[str, str] | None:
    if master is None:
        try:
            pool_spec(name, namespace, spec)
        except (kopf.PermanentError, kopf.TemporaryError) as e:
            return ("InvalidSpec", str(e))
        return (st.STARTING, "the master is being started")
    code = master.exited()
    if code is None:
        return None
    message = f"master exited with code {code}: {master.last_error() or 'see the operator log'}"
    if time.monotonic() - master.started_at >= RESTART_BACKOFF_S:
        kopf.warn(body, reason="MasterExited", message=message + "; restarting")
        parsed, url = pool_spec(name, namespace, spec)
        MASTERS.start(key, parsed, url)
    return ("MasterExited", message)


def _publish_pod_status(name: str, namespace: str, spec: dict[str, Any], meta: kopf.Meta,
                        status: kopf.Status, body: kopf.Body, patch: kopf.Patch,
                        memo: kopf.Memo) -> None:
    """A pool in worker pods: decide the pod count from the masters' numbers, then .status."""
    key = repr(sorted(spec.items()))
    if memo.get("resolved", (None,))[0] != key:  # read the Secret once per spec, not per tick
        memo["resolved"] = (key, *pool_spec(name, namespace, spec))
    _, parsed, url = memo["resolved"]
    problem: tuple[str, str] | None = None
    try:
        cached_url, client = memo.get("redis", (None, None))
        if cached_url != url:
            client = connect(url, socket_timeout=2)
            memo["redis"] = (url, client)
        stats = read_stats(client, Keys(parsed.queue))
    except redis.RedisError as e:
        stats, problem = None, ("RedisUnavailable", f"cannot read the queue's Redis: {type(e).__name__}")
    pods = podpools.look(namespace, name, stats["masters"] if stats else [])
    counters: dict[str, int] = {}
    if stats is not None:
        # claimed but not started: in flight minus running, over every master on the queue (a
        # draining pod's running tasks are not waiting for a new pod)
        busy = sum(int(m.get("busy", 0)) for m in stats["masters"])
        waiting = stats["backlog"] + max(0, stats["in_flight"] - busy)
        decision, timers = podpools.scale(parsed, namespace, pods, waiting,
                                          memo.get("pod_timers", Timers()), time.monotonic())
        memo["pod_timers"] = timers
        if decision.reason:
            grew = decision.desired > len(pods.seen)
            kopf.info(body, reason="PodsScaledOut" if grew else "PodsScaledIn",
                      message=f"worker pods {len(pods.seen)} -> {decision.desired}: {decision.reason}")
        ready = sum(1 for p in pods.seen if p.ready)
        counters = {**st.counts_of(stats, pods.masters), "pods": decision.desired, "readyPods": ready}
        if ready == 0 and problem is None:
            problem = (st.STARTING, "no worker pod's master is serving yet")
    generation = int(meta.get("generation") or 0)
    wanted = {**counters, "observedGeneration": generation,
              "conditions": st.conditions(problem, generation, status.get("conditions"))}
    patch.status.update(st.changed(status, wanted))
