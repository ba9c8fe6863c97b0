"""The timer of a pool in worker pods (spec.pods): decide the pod count each second, then .status.

The worker pods' masters publish their numbers in Redis like any master; this timer reads
them, lets `podpools.scale` (the pure `pod_scaling.decide_pods`, applied) set the Deployment's
replicas, and writes the status.
"""

from __future__ import annotations

import time
from typing import Any

import kopf

from ..protocol import Keys
from ..queue import read_queue_stats
from ..redis_errors import REDIS_ERRORS
from . import podpools
from . import status as st
from .crd import RESOURCE
from .master_status import log_unreadable
from .pool_state import in_pods, pool_state

#: how often the pod count is decided and .status follows (decide_pods keeps its own timers)
SCALE_INTERVAL_S = 1.0


@kopf.timer(*RESOURCE, id="pods", interval=SCALE_INTERVAL_S, when=in_pods)
def scale_pods(name: str, namespace: str, spec: kopf.Spec, meta: kopf.Meta, status: kopf.Status,
               body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    """Decide the pod count from the masters' numbers, then .status."""
    state = pool_state(memo)
    parsed, target = state.resolve(name, namespace, dict(spec))
    problem: st.Problem | None = None
    try:
        stats = read_queue_stats(state.client(target), Keys(parsed.queue))
    except REDIS_ERRORS as e:  # a cluster that lost every node raises no RedisError
        stats, problem = None, st.Problem("RedisUnavailable",
                                          f"cannot read the queue's Redis: {type(e).__name__}")
    if stats is not None:
        log_unreadable(stats)
    pods = podpools.look(namespace, name, stats.masters if stats else ())
    counters: dict[str, int] = {}
    if pods is None:  # the create handler has not written the Deployment yet: nothing to scale
        problem = problem or st.Problem.starting("the worker pods' Deployment is being created")
    elif stats is not None:
        # claimed but not started: in flight minus running, over every master on the queue (a
        # draining pod's running tasks are not waiting for a new pod)
        busy = sum(m.busy for m in stats.masters)
        waiting = stats.backlog + max(0, stats.in_flight - busy)
        decision, state.pod_timers = podpools.scale(parsed, namespace, pods, waiting,
                                                    state.pod_timers, time.monotonic())
        if decision.reason:
            grew = decision.desired > len(pods.seen)
            kopf.info(body, reason="PodsScaledOut" if grew else "PodsScaledIn",
                      message=f"worker pods {len(pods.seen)} -> {decision.desired}: {decision.reason}")
        ready = sum(1 for p in pods.seen if p.ready)
        counters = {**st.counts_of(stats, pods.masters), "pods": decision.desired, "readyPods": ready}
        if ready == 0 and problem is None:
            problem = st.Problem.starting("no worker pod's master is serving yet")
    patch.status.update(st.build(counters, problem, int(meta.get("generation") or 0), status))
