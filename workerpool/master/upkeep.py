"""A pool's Redis upkeep: the backlog, heartbeats, published numbers and recovery.

It knows queues, keys and worker ids, never processes: `Pool` tells it which workers exist and
which have exited, and reads back the backlog and whether Redis answers. Every step backs off on
its own (redis_errors.Trouble), so a key a user broke stops only that step, and an outage pauses
them all without ever ending the master.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable

import redis

from .. import logs, protocol
from ..connection import connect
from ..ledger import Ledger
from ..protocol import Keys, MasterReport
from ..redis_errors import REDIS_ERRORS, Trouble, drop_stale_connections, is_transient

ORPHAN_SWEEP_INTERVAL_S = 30.0  # how often processing lists with no live owner are looked for
UPKEEP_SOCKET_TIMEOUT_S = 2.0  # the master's commands are short; past this Redis is gone
# the command each step sends, for the error line when redis-py does not name it
_STEP_COMMANDS = {"poll": "PROMOTE", "heartbeat": "ZADD+HSET+ZRANGEBYSCORE",
                  "sweep": "SCAN+ZSCORE+RECOVER", "recover": "RECOVER"}


class Upkeep:
    """The Redis side of one pool, for one master."""

    def __init__(self, redis_url: str, queue: str, master_id: str, ledger: Ledger) -> None:
        self.queue = queue
        self.keys = Keys(queue)
        self.master_id = master_id
        self.ledger = ledger  # counts Redis errors for /metrics
        self.redis: redis.Redis = connect(redis_url, socket_timeout=UPKEEP_SOCKET_TIMEOUT_S)
        self._promote = self.redis.register_script(protocol.PROMOTE)
        self._recover = self.redis.register_script(protocol.RECOVER)
        self.backlog = 0
        self.redis_ok = True
        self.next_heartbeat = 0.0
        self.next_sweep = 0.0
        # (worker id, slot position to charge or -1) of exited workers whose tasks go back
        self.recoveries: list[tuple[str, int]] = []
        # After an outage (a failover), other masters' heartbeats look expired until they too
        # have reconnected: their workers are alive, so nothing is recovered before this.
        self.trust_expiry_at = 0.0
        self._trouble: dict[str, Trouble] = {}
        self._retry_at: dict[str, float] = {}

    def poll(self, now: float) -> None:
        """Promote due retries and read the backlog; sweep orphans and return exited workers'
        tasks when due. Stops at the first step that finds Redis unreachable."""
        steps: list[tuple[str, str, Callable[[], None]]] = [("poll", self.queue, self._read_backlog)]
        if now >= self.next_sweep:
            self.next_sweep = now + ORPHAN_SWEEP_INTERVAL_S
            steps.append(("sweep", self.keys.processing("*"), self._sweep_orphans))
        if self.recoveries:
            steps.append(("recover", self.queue, self._recover_pending))
        if all(self._run_step(name, key, step, now) for name, key, step in steps):
            self._redis_back()

    def publish(self, now: float, numbers: Callable[[], MasterReport],
                worker_ids: Callable[[], Iterable[str]]) -> None:
        """When due: refresh our heartbeats, publish our numbers, recover the expired (both
        callables run only then, not on every tick)."""
        if now < self.next_heartbeat or not self.redis_ok:
            return  # (while Redis is down, poll() finds out first when it is back)
        self.next_heartbeat = now + protocol.HEARTBEAT_INTERVAL_S
        self._run_step("heartbeat", self.keys.alive,
                       lambda: self._heartbeat(numbers(), worker_ids()), now)

    def publish_soon(self) -> None:
        """The numbers changed (a worker forked or exited): publish them on the next tick."""
        self.next_heartbeat = 0.0

    def return_tasks(self, worker_id: str, charge: int) -> None:
        """A worker exited: put what it held back on the queue (now, or on later ticks if
        Redis is down), charging an attempt to its task at slot position `charge` (-1: none)."""
        self.recoveries.append((worker_id, charge))
        self.try_recover_pending()

    def try_recover_pending(self) -> bool:
        """Recover what exited workers held; False if Redis did not take it all."""
        return self._run_step("recover", self.queue, self._recover_pending, time.monotonic()) \
            and not self.recoveries

    def withdraw(self) -> None:
        """Remove this master's entry (clean stop), so `stats` stops showing it at once."""
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.zrem(self.keys.alive, Keys.alive_master(self.master_id))
            pipe.hdel(self.keys.masters, self.master_id)
            pipe.execute()
        except REDIS_ERRORS:
            pass  # the entry expires by itself

    def _read_backlog(self) -> None:
        self.backlog = int(self._promote([self.keys.delayed, self.queue],
                                         [protocol.now_ms(), protocol.PROMOTE_BATCH]))

    def _heartbeat(self, numbers: MasterReport, worker_ids: Iterable[str]) -> None:
        now = protocol.now_ms()
        deadline = now + int(protocol.HEARTBEAT_TTL_S * 1000)
        members = {Keys.alive_master(self.master_id): deadline}
        members.update({Keys.alive_worker(worker_id): deadline for worker_id in worker_ids})
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(self.keys.alive, members)
        pipe.hset(self.keys.masters, self.master_id, numbers.to_json())
        pipe.zrangebyscore(self.keys.alive, "-inf", now)
        expired = pipe.execute()[2]
        if self._expiry_trusted():
            for member in expired:
                self._recover_expired(member)

    def _expiry_trusted(self) -> bool:
        """False during an outage and for one heartbeat TTL after it (see trust_expiry_at)."""
        return self.redis_ok and time.monotonic() >= self.trust_expiry_at

    def _sweep_orphans(self) -> None:
        """Recover processing lists whose worker is in no master's heartbeats at all.

        The safety net behind heartbeat expiry: whatever left a list behind (a crash at the
        worst moment, a flushed heartbeat set), its tasks go back to the queue.
        """
        if not self._expiry_trusted():
            return
        prefix = self.keys.processing("")
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + "*"  # queue names may hold glob characters
        for key in self.redis.scan_iter(match=pattern, count=500):
            member = Keys.alive_worker(key[len(prefix.encode()):])
            if self.redis.zscore(self.keys.alive, member) is None:
                self._recover_expired(member)

    def _recover_expired(self, member: bytes) -> None:
        """Recover what a vanished worker held, or forget a vanished master.

        Bytes throughout: a name written by hand need not be UTF-8, and must neither stop the
        recovery of the others nor stay behind."""
        whose, ident = Keys.parse_alive(member)
        if whose == "worker":
            moved = self._recover([self.keys.processing_of(ident), self.queue, self.keys.seq],
                                  [0, protocol.ENVELOPE_PREFIX])
            if moved:
                logs.event("recovered tasks of a vanished worker", level=logging.WARNING,
                           worker_id=ident.decode("utf-8", "backslashreplace"), tasks=moved)
        else:
            self.redis.hdel(self.keys.masters, ident)
        self.redis.zrem(self.keys.alive, member)

    def _recover_pending(self) -> None:
        while self.recoveries:
            worker_id, charge = self.recoveries[0]
            moved = self._recover([self.keys.processing(worker_id), self.queue, self.keys.seq],
                                  [charge, protocol.ENVELOPE_PREFIX])
            self.redis.zrem(self.keys.alive, Keys.alive_worker(worker_id))
            self.recoveries.pop(0)
            if moved:
                logs.event("returned tasks to the queue", worker_id=worker_id, tasks=moved,
                           charged_attempt=charge >= 0)

    def _run_step(self, name: str, key: str, step: Callable[[], None], now: float) -> bool:
        """Run one step unless it is backing off; False if Redis is unreachable."""
        if now < self._retry_at.get(name, 0.0):
            return True
        trouble = self._trouble.setdefault(name, Trouble(name))
        try:
            step()
        except Exception as e:  # a Redis error, or a reply we did not expect (never fatal)
            self._retry_at[name] = now + trouble.failed(e, _command_of(e, name), key)
            drop_stale_connections(self.redis, e)  # READONLY: find the new primary
            self.ledger.redis_error(e)
            if is_transient(e):
                self._redis_gone()
                return False
            return True
        trouble.succeeded()
        return True

    def _redis_back(self) -> None:
        if not self.redis_ok:
            logs.event("redis is back; scale-up resumes", queue=self.queue)
            self.trust_expiry_at = time.monotonic() + protocol.HEARTBEAT_TTL_S
        self.redis_ok = True

    def _redis_gone(self) -> None:
        if self.redis_ok:
            logs.event("redis unavailable; keeping the workers, pausing scale-up",
                       level=logging.WARNING, queue=self.queue)
        self.redis_ok = False


def _command_of(exc: Exception, step: str) -> str:
    """The command that failed, as redis-py names it inside a pipeline, else the step's."""
    match = re.match(r"Command # \d+ \((\S+)", str(exc))
    return match.group(1) if match else _STEP_COMMANDS.get(step, step)
