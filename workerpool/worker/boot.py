"""The child's side of a worker's birth: one call from the fork to os._exit, in order."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import NoReturn

from .. import logs
from ..process import ExitCode, prefer_oom_kill, set_title, tie_to_parent
from .loop import Worker
from .seed import WorkerSeed


def become_worker(seed: WorkerSeed, child_setup: Callable[[], None]) -> NoReturn:
    """Run the freshly forked child as the worker `seed` holds, and leave through os._exit.

    `child_setup` is the master's: it undoes the master's signal plumbing (its handlers, its
    wake-up and nudge pipes, its listening sockets), which only the master knows. A failure
    before serving exits BOOT_FAILED (the master stops instead of fork-looping); after, CRASHED
    (the worker is replaced).
    """
    worker = seed.worker
    config = worker.cfg
    code: int = ExitCode.BOOT_FAILED
    try:
        child_setup()
        if config.master_pid is not None:  # always, for a forked worker
            tie_to_parent(config.master_pid)  # parent-death signal; ORPHANED if it died already
        prefer_oom_kill()
        # no random.seed(): the random module reseeds itself in a forked child
        logs.set_role(config.role)
        set_title(f"worker[{config.role}] pool={config.spec.name}")
        code = ExitCode.CRASHED  # from here on a failure is a crash: the worker is replaced
        code = serve(worker, seed.forked_at)
    except BaseException:
        logs.event("worker failed", level=logging.CRITICAL, exc_info=True)
    finally:
        os._exit(int(code))


def serve(worker: Worker, forked_at: float) -> ExitCode:
    """Install the worker's signals, register, serve until it stops, and log why it did."""
    worker.signals.install()
    logs.buffer_until_flush()
    try:
        worker.register()
        logs.event("worker ready", queue=worker.spec.queue,
                   boot_ms=round((time.perf_counter() - forked_at) * 1000, 2))
        code = worker.run()
    except BaseException:
        worker.blame_oldest()
        raise
    finally:
        worker.redis.close()
    logs.event("worker exiting", reason=ExitCode.describe(int(code)), served=worker.served,
               gave_back=worker.give_back.given_back)
    logs.flush()
    return code
