"""The master's side of a worker's birth: build, connect and register it, fork, hand it over.

The master builds every worker it is about to fork before the first fork and forks them back
to back (master/pool.py, Pool.spawn): the objects sit in pages shared with the master, and
each child starts with a live connection and no connection setup of its own. The child's side
is worker/boot.py.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import redis

from .. import tracing
from ..connection import preconnected, release_in_parent
from ..protocol import Keys
from ..redis_errors import REDIS_ERRORS
from .config import WorkerConfig
from .loop import SOCKET_TIMEOUT_S, Worker, alive_entry


@dataclass(slots=True)
class WorkerSeed:
    """A worker built, connected and registered in the master, ready to fork.

    Its methods run in the master; the child hands the seed to become_worker (worker/boot.py).
    """

    worker: Worker
    forked_at: float = 0.0  # time.perf_counter() in the master just before the fork

    @property
    def worker_id(self) -> str:
        return self.worker.cfg.worker_id

    def fork(self) -> int:
        """os.fork(), noting when (the child logs its boot time): 0 in the child, else its pid."""
        self.forked_at = time.perf_counter()
        return os.fork()

    def hand_over(self, child_pid: int) -> None:
        """In the master, after the fork: the child owns the connected socket; close our copy."""
        release_in_parent(self.worker.redis, child_pid)


def plant(config: WorkerConfig, redis_url: str) -> WorkerSeed:
    """Build, connect and register one worker in the master (see WorkerSeed)."""
    tracing.opentelemetry()  # imported once in the master (if installed), not in each child
    client = preconnected(redis_url, SOCKET_TIMEOUT_S)
    return WorkerSeed(Worker(config, redis_url, client, registered=_register(client, config)))


def _register(client: redis.Redis, config: WorkerConfig) -> bool:
    """Enter Keys.alive on the worker's own connection: False if Redis is unreachable now.

    Doing it in the master saves the child a round trip; if it fails, the child registers
    itself (Worker.register) before it claims anything.
    """
    try:
        client.zadd(Keys(config.spec.queue).alive, alive_entry(config.worker_id))
    except REDIS_ERRORS:
        return False
    return True
