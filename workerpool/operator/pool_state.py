"""What the operator keeps per WorkerPool between handler calls: kopf's memos, typed.

kopf gives every handler, timer and daemon of one object the same per-object `memo` (a
shallow copy of the operator-wide one passed to `kopf.run`). The operator-wide part holds the
`Masters` registry; the per-object part holds one `PoolState`, so the daemon and the timers of
a pool read and write named fields instead of tuples under string keys.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import kopf
import redis

from ..connection import connect
from ..errors import SpecError
from ..spec import PoolSpec, parse_spec
from ..target import Target
from .masters import Masters
from .pod_scaling import Timers
from .secrets import read_secret_key
from .status import Problem

#: a timer run must not hang on a dead Redis: one slow read skips one tick, not the next ones
STATS_READ_TIMEOUT_S = 2.0


def pool_key(namespace: str, name: str) -> str:
    """How the registry, the state directory and the log name a pool: "namespace/name"."""
    return f"{namespace}/{name}"


def in_pods(spec: kopf.Spec, **_: Any) -> bool:
    """A kopf filter: the pool runs as a Deployment of worker pods (spec.pods)."""
    return spec.get("pods") is not None


def in_operator(spec: kopf.Spec, **_: Any) -> bool:
    """A kopf filter: the pool's master runs in the operator's own pod."""
    return spec.get("pods") is None


def validate(name: str, spec: dict[str, Any]) -> PoolSpec:
    """The local validator's verdict; a bad spec is a PermanentError (retrying cannot fix it)."""
    try:
        return parse_spec(name, dict(spec))
    except SpecError as e:
        raise kopf.PermanentError(str(e)) from None


def resolve(name: str, namespace: str, spec: dict[str, Any]) -> tuple[PoolSpec, Target]:
    """Validate, and find where the pool runs (its Redis URL inline, or read from a Secret)."""
    parsed = validate(name, spec)
    if parsed.redis_url:
        return parsed, Target(parsed.redis_url)
    if parsed.redis_url_from:
        ref = parsed.redis_url_from
        url = read_secret_key(namespace, ref.name, ref.key)
        try:
            return parsed, Target(url)
        except SpecError as e:  # the Secret can be fixed without an edit of the pool: retried
            # never the value itself: a Secret holding a bare password by mistake must not
            # put it in the status
            raise kopf.TemporaryError(f"spec.redis.urlFrom: Secret {ref.name!r} key {ref.key!r} "
                                      f"does not hold a Redis URL; expected {e.allowed}") from None
    raise kopf.PermanentError("spec.redis: give url or urlFrom.secretKeyRef")


@dataclass
class PoolState:
    """One pool's memory in this operator process."""

    #: the spec last resolved, keyed by its content, so a Secret is read once per edit, not per tick
    resolved_for: str | None = field(default=None, repr=False)  # holds an inline URL
    resolved: tuple[PoolSpec, Target] | None = None
    #: the client that reads the pool's published numbers, and where it was made for
    stats_target: Target | None = None
    stats_client: redis.Redis | None = field(default=None, repr=False)
    #: what is wrong with the pool now, as the daemon last saw it (None: nothing)
    problem: Problem | None = None
    #: worker crashes already reported as Events, for the master of that pid
    crashes_of: int | None = None
    crashes_seen: int = 0
    #: the status counters last written, to turn their changes into Events
    counters: dict[str, int] = field(default_factory=dict)
    #: the pod-scaling decision's timers (spec.pods only)
    pod_timers: Timers = field(default_factory=Timers)
    #: set by the update handler so the daemon applies an edit at once, not at its next look
    wake: threading.Event = field(default_factory=threading.Event)

    def resolve(self, name: str, namespace: str, spec: dict[str, Any]) -> tuple[PoolSpec, Target]:
        key = repr(sorted(spec.items()))
        if self.resolved_for != key or self.resolved is None:
            self.resolved = resolve(name, namespace, spec)
            self.resolved_for = key
        return self.resolved

    def client(self, target: Target) -> redis.Redis:
        """A client for `target`, made once (again only if the pool moves to another Redis)."""
        if self.stats_client is None or self.stats_target != target:
            self.stats_client = connect(target.redis_url, socket_timeout=STATS_READ_TIMEOUT_S)
            self.stats_target = target
        return self.stats_client


def pool_state(memo: kopf.Memo) -> PoolState:
    """This object's PoolState (made on first use; dict.setdefault is atomic under the GIL)."""
    state = memo.setdefault("pool", PoolState())
    assert isinstance(state, PoolState)
    return state


def registry(memo: kopf.Memo) -> Masters:
    """The operator's masters, put in the operator-wide memo by `workerpool operator`."""
    masters = memo["masters"]
    assert isinstance(masters, Masters)
    return masters
