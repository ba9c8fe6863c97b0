"""The producer API (Queue) and the read/admin side of a queue: stats and dead letters."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import redis

from . import protocol, tracing
from .connection import connect, replication_wait
from .errors import PayloadError, ResultTimeout, SpecError, TaskFailed
from .protocol import Keys, MasterReport
from .spec import QUEUE_MAX_LENGTH

ENQUEUE_CHUNK = 1000  # elements per RPUSH in enqueue_many: big enough to amortise, small enough for Redis


def queue_name_problem(name: str) -> str:
    """Why `name` cannot be a queue ('' if it can): a pool could never serve it, or Redis
    could not take it (a lone surrogate is not UTF-8)."""
    if not name or len(name) > QUEUE_MAX_LENGTH:
        return f"1 to {QUEUE_MAX_LENGTH} characters"
    if any(c.isspace() or not c.isprintable() for c in name):
        return "no spaces or control characters"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "valid UTF-8 text"
    return ""


class Queue:
    """A producer's handle on one queue.

    >>> q = Queue("emails", redis_url="redis://localhost:6379/0")
    >>> task_id = q.enqueue({"to": "ada@example.com"})
    >>> q.result(task_id, timeout=10)
    """

    def __init__(self, name: str, redis_url: str = "redis://localhost:6379/0",
                 client: redis.Redis | None = None) -> None:
        problem = queue_name_problem(name)
        if problem:
            raise SpecError("queue", name, problem)
        self.name = name
        self.keys = Keys(name)
        self._redis = client or connect(redis_url)
        # ?wait_replicas=N in the URL: each enqueue returns once N replicas have it (or timeout)
        self._wait = replication_wait(self._redis)

    def __repr__(self) -> str:
        return f"Queue({self.name!r})"  # the URL may carry a password

    def enqueue(self, payload: Any, traceparent: str | None = None) -> str:
        """Push one task; return its id.

        `traceparent`: the producer's W3C trace context; the handler reads it with
        `workerpool.current_traceparent()`, and with OpenTelemetry the task's run is its child span.
        """
        task_id = protocol.new_task_id()
        if traceparent is not None:
            tracing.check(traceparent)
        item = protocol.envelope(task_id, protocol.dumps(payload), 0, protocol.now_ms(), traceparent)
        if not self._wait[0]:
            self._redis.rpush(self.name, item)
            return task_id
        pipe = self._redis.pipeline(transaction=False)
        pipe.rpush(self.name, item)
        pipe.wait(*self._wait)  # on the same connection: waits for this RPUSH
        pipe.execute()
        return task_id

    def enqueue_many(self, payloads: Iterable[Any]) -> list[str]:
        """Push many tasks with pipelined RPUSHes; return their ids in order."""
        ids: list[str] = []
        chunk: list[str] = []
        pipe = self._redis.pipeline(transaction=False)
        now = protocol.now_ms()
        for payload in payloads:
            task_id = protocol.new_task_id()
            ids.append(task_id)
            chunk.append(protocol.envelope(task_id, protocol.dumps(payload), 0, now))
            if len(chunk) >= ENQUEUE_CHUNK:
                pipe.rpush(self.name, *chunk)
                chunk = []
        if chunk:
            pipe.rpush(self.name, *chunk)
        if self._wait[0]:
            pipe.wait(*self._wait)
        pipe.execute()
        return ids

    def result(self, task_id: str, timeout: float = 30.0) -> Any:
        """Wait for the task's result; raise TaskFailed if it was dead-lettered.

        Results are one-element lists, so BLMOVE from the list onto itself blocks until the
        result exists and reads it without removing it.
        """
        key = self.keys.result(task_id)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ResultTimeout(f"no result for task {task_id} within {timeout:g} s")
            # Redis >= 6 takes fractional seconds; redis-py's annotation says int
            raw = self._redis.blmove(key, key, min(left, 1.0), "RIGHT", "LEFT")  # type: ignore[arg-type]
            if raw is not None:
                result = protocol.Result.from_json(cast(bytes, raw))
                if result.status == "dead":
                    raise TaskFailed(task_id, result.error, result.attempts)
                return result.value

    def backlog(self) -> int:
        """Tasks waiting in the queue (not yet claimed by a worker)."""
        return int(self._redis.llen(self.name))

    def stats(self) -> dict[str, Any]:
        """Counts and live workers of this queue, as every master publishes them (a dict of
        JSON values: QueueStats.to_dict())."""
        return read_stats(self._redis, self.keys)

    def read_stats(self) -> QueueStats:
        """stats(), typed."""
        return read_queue_stats(self._redis, self.keys)

    def dead_letters(self, limit: int = 1000) -> list[dict[str, Any]]:
        """The first `limit` dead letters (oldest first)."""
        return [protocol.DeadLetter.from_json(e).to_dict()
                for e in self._redis.lrange(self.keys.dead, 0, limit - 1)]

    def requeue_dead(self) -> int:
        """Send every dead letter back to the queue with its attempts reset; return the count."""
        entries = self._redis.lrange(self.keys.dead, 0, -1)
        if not entries:
            return 0
        items = [protocol.reset_attempts(protocol.DeadLetter.from_json(e).item) for e in entries]
        pipe = self._redis.pipeline(transaction=True)
        pipe.rpush(self.name, *items)
        pipe.ltrim(self.keys.dead, len(entries), -1)  # new dead letters are appended: keep them
        pipe.execute()
        return len(entries)

    def purge_dead(self) -> int:
        """Delete every dead letter; return how many there were."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.llen(self.keys.dead)
        pipe.delete(self.keys.dead)
        return int(pipe.execute()[0])

    def close(self) -> None:
        self._redis.close()


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One look at a queue: its lists and counters, and what its live masters publish."""

    queue: str
    backlog: int  # waiting in the queue
    in_flight: int  # in the live workers' processing lists
    delayed: int  # retries waiting for their backoff
    dead_lettered: int  # in the dead-letter list now
    processed: int = 0  # counters since the queue was created
    failed: int = 0
    retried: int = 0
    dead: int = 0
    masters: tuple[MasterReport, ...] = ()
    unreadable: tuple[str, ...] = ()  # why each skipped entry of Keys.masters is not a MasterReport

    def to_dict(self) -> dict[str, Any]:
        """As `Queue.stats()` returns it (and `workerpool stats --json` prints it)."""
        out = {"queue": self.queue, "backlog": self.backlog, "in_flight": self.in_flight,
               "delayed": self.delayed, "dead_lettered": self.dead_lettered,
               "processed": self.processed, "failed": self.failed, "retried": self.retried,
               "dead": self.dead, "masters": [m.to_dict() for m in self.masters]}
        if self.unreadable:
            out["unreadable"] = list(self.unreadable)
        return out


def read_queue_stats(r: redis.Redis, keys: Keys) -> QueueStats:
    """Backlog, in-flight, delayed, dead and the counters, plus the live masters' numbers.

    An entry of Keys.masters that is not a MasterReport (another version's, or written by
    hand) is skipped, and said why in `unreadable`.
    """
    now = protocol.now_ms()
    pipe = r.pipeline(transaction=False)
    pipe.llen(keys.queue)
    pipe.zcard(keys.delayed)
    pipe.llen(keys.dead)
    pipe.hgetall(keys.stats)
    pipe.zrangebyscore(keys.alive, now, "+inf")
    pipe.hgetall(keys.masters)
    backlog, delayed, dead, counters, alive, masters = pipe.execute()
    live = set(alive)
    workers = [ident for whose, ident in map(Keys.parse_alive, live) if whose == "worker"]
    pipe = r.pipeline(transaction=False)
    for w in workers:
        pipe.llen(keys.processing_of(w))
    in_flight = sum(pipe.execute()) if workers else 0
    published, unreadable = [], []
    for master_id, entry in masters.items():
        if Keys.alive_master(master_id) in live:
            try:
                published.append(MasterReport.from_json(entry))
            except PayloadError as e:
                unreadable.append(f"master {master_id.decode('utf-8', 'replace')}: {e}")
    counts = {k.decode(): int(v) for k, v in counters.items()}
    return QueueStats(keys.queue, int(backlog), int(in_flight), int(delayed), int(dead),
                      counts.get("processed", 0), counts.get("failed", 0),
                      counts.get("retried", 0), counts.get("dead", 0),
                      tuple(published), tuple(unreadable))


def read_stats(r: redis.Redis, keys: Keys) -> dict[str, Any]:
    """read_queue_stats() as a dict of JSON values (Queue.stats())."""
    return read_queue_stats(r, keys).to_dict()
