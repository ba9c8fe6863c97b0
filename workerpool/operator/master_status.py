"""The status timer of a pool whose master runs in the operator's pod: Redis numbers -> .status."""

from __future__ import annotations

import logging
import socket
from typing import Any

import kopf

from .. import logs
from ..protocol import Keys
from ..queue import QueueStats, read_queue_stats
from ..redis_errors import REDIS_ERRORS
from . import status as st
from .crd import RESOURCE
from .pool_state import in_operator, pool_key, pool_state, registry

#: how often .status follows the master's published numbers (it writes only what changed)
STATUS_INTERVAL_S = 1.0
#: problems of unreadable published numbers already logged (once each: the timers run each second)
_LOGGED: set[str] = set()
_LOGGED_MAX = 1000


@kopf.timer(*RESOURCE, id="status", interval=STATUS_INTERVAL_S, when=in_operator)
def publish_status(name: str, namespace: str, meta: kopf.Meta, status: kopf.Status,
                   body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    """Counters, conditions and Events (crashes, scaling) from what the master publishes."""
    state = pool_state(memo)
    master = registry(memo).running.get(pool_key(namespace, name))
    problem = state.problem if master is None else None
    if master is None and problem is None:
        problem = st.Problem.starting("the master is being started")
    counters: dict[str, int] = {}
    if master is not None:
        host = socket.gethostname()
        try:
            stats = read_queue_stats(state.client(master.target), Keys(master.spec.queue))
        except REDIS_ERRORS as e:  # a cluster that lost every node raises no RedisError
            problem = st.Problem("RedisUnavailable", f"cannot read the queue's Redis: {type(e).__name__}")
        else:
            log_unreadable(stats)
            counters = st.counts(stats, master.pid, host)
            seen = state.crashes_seen if state.crashes_of == master.pid else 0  # a new master: 0
            state.crashes_of = master.pid
            state.crashes_seen, message = st.crash_event(stats, master.pid, host, seen)
            if message:
                kopf.warn(body, reason="WorkerCrashed", message=message)
    for reason, message in st.scale_events(state.counters, counters):
        kopf.info(body, reason=reason, message=message)
    state.counters = counters
    patch.status.update(st.build(counters, problem, int(meta.get("generation") or 0), status))


def log_unreadable(stats: QueueStats) -> None:
    """Log, once each, the masters' entries that read_queue_stats skipped (another version's,
    or written by hand): the status counts them as absent."""
    for problem in stats.unreadable:
        if problem not in _LOGGED:
            if len(_LOGGED) >= _LOGGED_MAX:
                _LOGGED.clear()
            _LOGGED.add(problem)
            logs.event("skipped a master's unreadable numbers", level=logging.WARNING,
                       queue=stats.queue, error=problem)
