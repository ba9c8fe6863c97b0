"""A burst: one worker in the caller's own process until the queue is empty (arq's `burst`).

For tests and scripts: the same serving code as a forked worker, with no master. It does not
check on a parent, has no nudge pipe and writes to a one-slot table of its own; the retries
that are due are promoted by the worker itself, and those not due yet (retryDelaySeconds > 0)
stay in the delayed set for a master or a later burst.
"""

from __future__ import annotations

import os
import random
import signal

from ..process import ExitCode, Role
from ..protocol import Keys
from ..slots import SlotTable
from ..spec import PoolSpec
from .config import WorkerConfig
from .handler import load
from .loop import Worker

# the handlers a burst replaces for its duration and gives back after
_SIGNALS = (signal.SIGTERM, signal.SIGALRM, signal.SIGINT, signal.SIGHUP)


def burst(spec: PoolSpec, redis_url: str) -> tuple[ExitCode, int]:
    """Serve `spec`'s queue here until it is empty: (why it stopped, tasks served).

    Call it from the main thread (SIGALRM enforces taskTimeoutSeconds); the caller's signal
    handlers are restored afterwards. SIGTERM during a burst stops it after the task in hand.
    """
    error_handler = load(spec.error_handler, "spec.errorHandler") if spec.error_handler else None
    table = SlotTable(1)
    worker_id = f"burst.{os.getpid()}.{random.getrandbits(32):08x}"
    config = WorkerConfig(spec, Role.PERMANENT, worker_id, None, table.writer(table.acquire()),
                          load(spec.handler), error_handler)
    worker = Worker(config, redis_url)
    saved = {signum: signal.getsignal(signum) for signum in _SIGNALS}
    worker.signals.install()
    try:
        worker.register()
        code = worker.run(burst=True)
        worker.redis.zrem(worker.keys.alive, Keys.alive_worker(worker_id))
    finally:
        for signum, handler in saved.items():
            if handler is not None:  # None: set outside Python, cannot be put back
                signal.signal(signum, handler)
        worker.give_back.close()
        worker.redis.close()
    return code, worker.served
