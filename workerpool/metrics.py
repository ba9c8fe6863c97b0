"""The master's Prometheus metrics: one custom collector over its pools, no multiprocess dir.

Task counters come from the workers' shared-memory slots plus the master's ledger (exited
workers), so a scrape sums a few dozen doubles per worker and counters never go backwards.
Queue numbers come from one pipelined Redis round trip per pool at scrape time. Labels are
`pool`, `queue` and `role`, plus one closed set per metric (outcome, state, reason, kind):
never a pid, worker id or task id, so temporaries that churn add no series.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Protocol, TypeVar

import redis
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .ledger import EXIT_REASONS, ROLES, Ledger
from .protocol import Keys
from .redis_errors import REDIS_ERRORS
from .slots import (
    BUCKETS_S,
    COUNTERS,
    DURATION_BUCKET0,
    DURATION_SUM,
    OUTCOMES,
    WAIT_BUCKET0,
    WAIT_SUM,
    SlotTable,
)
from .spec import PoolSpec

_ENQUEUED_AT = re.compile(rb'"enqueued_at":(\d+)')
#: our envelope puts enqueued_at before the payload: the head task's first bytes hold it, and a
#: large payload is never searched (a foreign task without it has no age)
_HEAD_SEARCHED_BYTES = 200
_POOL = ["pool", "queue"]
_K = TypeVar("_K")


class ChildSource(Protocol):
    """A worker as the master tracks it (master/pool.py's Child)."""

    @property
    def role(self) -> str: ...
    @property
    def slot(self) -> int: ...


class UpkeepSource(Protocol):
    """A pool's Redis side (master/upkeep.py's Upkeep)."""

    @property
    def redis(self) -> redis.Redis: ...
    @property
    def keys(self) -> Keys: ...
    @property
    def redis_ok(self) -> bool: ...
    @property
    def backlog(self) -> int: ...


class PoolSource(Protocol):
    """What the collector reads from one of the master's pools (master/pool.py's Pool)."""

    @property
    def spec(self) -> PoolSpec: ...
    @property
    def slots(self) -> SlotTable: ...
    @property
    def children(self) -> Mapping[int, ChildSource]: ...
    @property
    def ledger(self) -> Ledger: ...
    @property
    def upkeep(self) -> UpkeepSource: ...
    @property
    def crash_streak(self) -> int: ...
    @property
    def respawn_after(self) -> float: ...


@dataclass(slots=True)
class _Sample:
    """One (pool, queue)'s numbers, summed over the master's pools that share those labels."""

    counts: dict[str, list[float]] = field(
        default_factory=lambda: {role: [0.0] * COUNTERS for role in ROLES})
    workers: dict[tuple[str, str], int] = field(default_factory=dict)  # (role, state) -> n
    forks: dict[str, float] = field(default_factory=dict)
    exits: dict[tuple[str, str], float] = field(default_factory=dict)
    lost: dict[str, float] = field(default_factory=dict)
    redis_errors: dict[str, float] = field(default_factory=dict)
    in_flight: int = 0
    min_workers: int = 0
    max_workers: int = 0
    backoff: bool = False
    queue: dict[str, float] | None = None  # backlog, delayed, dead letters, oldest age; None = unread


def _add(into: dict[_K, float], counts: Mapping[_K, int]) -> None:
    for key, value in counts.items():
        into[key] = into.get(key, 0) + value


def _sample_of(pool: PoolSource, sample: _Sample, now: float) -> None:
    for role in ROLES:
        totals = sample.counts[role]
        for i, value in enumerate(pool.ledger.retired[role]):
            totals[i] += value
    for child in pool.children.values():
        totals = sample.counts[child.role]
        for i, value in enumerate(pool.slots.counters(child.slot)):
            totals[i] += value
        seen = pool.slots.read(child.slot)
        key = (child.role, "busy" if seen.busy else "idle")
        sample.workers[key] = sample.workers.get(key, 0) + 1
        sample.in_flight += seen.busy + seen.held
    _add(sample.forks, pool.ledger.forks)
    _add(sample.exits, pool.ledger.exits)
    _add(sample.lost, pool.ledger.lost)
    sample.min_workers = max(sample.min_workers, pool.spec.min_workers)
    sample.max_workers = max(sample.max_workers, pool.spec.max_workers)
    sample.backoff = sample.backoff or (pool.crash_streak > 1 and now < pool.respawn_after)
    if sample.queue is None:
        sample.queue = read_queue(pool)
    _add(sample.redis_errors, pool.ledger.redis_errors)


def read_queue(pool: PoolSource) -> dict[str, float] | None:
    """Backlog, delayed retries, dead letters and the oldest waiting task's age: one round trip.

    None when Redis is unreachable (the error is counted); skipped while the master already
    knows Redis is down, so a scrape never waits on a dead server's timeouts.
    """
    upkeep = pool.upkeep
    if not upkeep.redis_ok:
        return None
    try:
        pipe = upkeep.redis.pipeline(transaction=False)
        pipe.llen(pool.spec.queue)
        pipe.lindex(pool.spec.queue, 0)
        pipe.zcard(upkeep.keys.delayed)
        pipe.llen(upkeep.keys.dead)
        backlog, head, delayed, dead = pipe.execute()
    except REDIS_ERRORS as e:
        pool.ledger.redis_error(e)
        return None
    out = {"backlog": float(backlog), "delayed": float(delayed), "dead_letters": float(dead)}
    found = _ENQUEUED_AT.search(head[:_HEAD_SEARCHED_BYTES]) if head else None
    if not head:
        out["oldest_age"] = 0.0
    elif found and int(found.group(1)):
        out["oldest_age"] = max(0.0, time.time() - int(found.group(1)) / 1000)
    return out  # a foreign task at the head has no enqueue time: the age is left out


def _histogram(name: str, doc: str, samples: Mapping[tuple[str, str], _Sample],
               bucket0: int, sum_at: int) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=_POOL)
    for labels, sample in samples.items():
        running = 0.0
        buckets: list[tuple[str, float]] = []
        for i, bound in enumerate((*BUCKETS_S, float("inf"))):
            running += sum(sample.counts[role][bucket0 + i] for role in ROLES)
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
        total = sum(sample.counts[role][sum_at] for role in ROLES)
        family.add_metric(list(labels), buckets, total)
    return family


def _gauge(name: str, doc: str, samples: Mapping[tuple[str, str], _Sample],
           value: Callable[[_Sample], float | None]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=_POOL)
    for labels, sample in samples.items():
        v = value(sample)
        if v is not None:
            family.add_metric(list(labels), v)
    return family


def _queue_value(key: str) -> Callable[[_Sample], float | None]:
    return lambda s: s.queue.get(key) if s.queue is not None else None


class PoolCollector(Collector):
    """Collects every metric of the master's pools at scrape time (prometheus-client)."""

    def __init__(self, pools: Callable[[], Iterable[PoolSource]]) -> None:
        self.pools = pools

    def describe(self) -> list[Metric]:
        return []  # describe nothing: registering must not run a scrape (Redis calls)

    def collect(self) -> Iterator[Metric]:
        now = time.monotonic()
        samples: dict[tuple[str, str], _Sample] = {}
        for pool in self.pools():
            _sample_of(pool, samples.setdefault((pool.spec.name, pool.spec.queue), _Sample()), now)
        yield from _task_metrics(samples)
        yield from _queue_metrics(samples)
        yield from _worker_metrics(samples)


def _task_metrics(samples: Mapping[tuple[str, str], _Sample]) -> Iterator[Metric]:
    tasks = CounterMetricFamily("workerpool_tasks", "Tasks finished, by outcome and worker role "
                                "(lost = running in a worker that died; retried with an attempt charged).",
                                labels=[*_POOL, "role", "outcome"])
    for labels, s in samples.items():
        for role in ROLES:
            for i, outcome in enumerate(OUTCOMES):
                tasks.add_metric([*labels, role, outcome], s.counts[role][i])
            tasks.add_metric([*labels, role, "lost"], s.lost.get(role, 0))
    yield tasks
    yield _histogram("workerpool_task_duration_seconds", "Time from a task's start to its outcome.",
                     samples, DURATION_BUCKET0, DURATION_SUM)
    yield _histogram("workerpool_task_queue_wait_seconds",
                     "Time from enqueue to the first attempt's start (our producers' tasks).",
                     samples, WAIT_BUCKET0, WAIT_SUM)


def _queue_metrics(samples: Mapping[tuple[str, str], _Sample]) -> Iterator[Metric]:
    yield _gauge("workerpool_backlog", "Tasks waiting in the queue.", samples, _queue_value("backlog"))
    yield _gauge("workerpool_oldest_task_age_seconds", "Age of the task at the head of the queue "
                 "(0 when empty).", samples, _queue_value("oldest_age"))
    yield _gauge("workerpool_delayed", "Retries waiting for their backoff.", samples,
                 _queue_value("delayed"))
    yield _gauge("workerpool_dead_letters", "Tasks in the dead-letter list.", samples,
                 _queue_value("dead_letters"))
    yield _gauge("workerpool_in_flight", "Tasks claimed by this master's workers (running or held).",
                 samples, lambda s: s.in_flight)
    yield _gauge("workerpool_redis_up", "1 if the master reaches Redis, else 0.", samples,
                 lambda s: float(s.queue is not None))
    errors = CounterMetricFamily("workerpool_redis_errors", "Redis errors seen by the master, by kind.",
                                 labels=[*_POOL, "kind"])
    for labels, s in samples.items():
        for kind in ("connection", "timeout", "other"):
            errors.add_metric([*labels, kind], s.redis_errors.get(kind, 0))
    yield errors


def _worker_metrics(samples: Mapping[tuple[str, str], _Sample]) -> Iterator[Metric]:
    workers = GaugeMetricFamily("workerpool_workers", "Live workers by role and state.",
                                labels=[*_POOL, "role", "state"])
    forks = CounterMetricFamily("workerpool_forks", "Workers forked, by role.", labels=[*_POOL, "role"])
    exits = CounterMetricFamily("workerpool_worker_exits", "Workers exited, by role and reason.",
                                labels=[*_POOL, "role", "reason"])
    for labels, s in samples.items():
        for role in ROLES:
            for state in ("idle", "busy"):
                workers.add_metric([*labels, role, state], s.workers.get((role, state), 0))
            forks.add_metric([*labels, role], s.forks.get(role, 0))
            for reason in EXIT_REASONS:  # every series from 0, so rate() sees the first exit
                exits.add_metric([*labels, role, reason], s.exits.get((role, reason), 0))
    yield from (workers, forks, exits)
    yield _gauge("workerpool_min_workers", "spec.minWorkers.", samples, lambda s: s.min_workers)
    yield _gauge("workerpool_max_workers", "spec.maxWorkers.", samples, lambda s: s.max_workers)
    yield _gauge("workerpool_crash_loop_backoff", "1 while forks are held back by a crash loop.",
                 samples, lambda s: float(s.backoff))


class BuildInfo(Collector):
    def collect(self) -> Sequence[Metric]:
        try:
            ours = version("workerpool")
        except PackageNotFoundError:
            ours = "unknown"
        info = InfoMetricFamily("workerpool_build", "The running workerpool version.")
        info.add_metric([], {"version": ours})
        return [info]


def registry_for(pools: Callable[[], Iterable[PoolSource]]) -> CollectorRegistry:
    """A fresh registry: our pools, the master's own CPU and memory (process_*), the version."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PoolCollector(pools))
    registry.register(ProcessCollector(registry=None))
    registry.register(BuildInfo())
    return registry
