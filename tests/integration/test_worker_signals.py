"""A worker's signal handlers only record (SIGALRM → TaskTimeout is the one exception)."""

from __future__ import annotations

import os
import signal
import threading

import handlers
import pytest
import redis
from helpers import manifest, wait_until

from workerpool.process import ExitCode, Role
from workerpool.slots import SlotTable
from workerpool.spec import parse_manifest
from workerpool.worker import Worker, WorkerConfig

SIGNALS = (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGALRM)


@pytest.fixture
def worker(redis_url):
    """A Worker in this process (its master: our parent), with pytest's handlers restored after."""
    spec = parse_manifest(manifest("sig", handler="handlers:echo"))
    table = SlotTable(2)
    config = WorkerConfig(spec, Role.PERMANENT, "test.0.1", os.getppid(), table.writer(table.acquire()),
                          handlers.echo, None)
    saved = {s: signal.getsignal(s) for s in SIGNALS}
    w = Worker(config, redis_url)
    w.signals.install()
    yield w
    for s, handler in saved.items():
        signal.signal(s, handler)
    w.redis.close()


def test_sigterm_only_sets_a_flag_whatever_the_worker_is_doing(worker):
    worker.blocked = True  # the state in which the handler used to raise into redis-py
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGTERM)  # a second one, as kubelet or a user may send
    assert worker.stopping


def test_sigterm_storm_while_blocked_ends_run_cleanly_and_claims_nothing(worker, r):
    def storm():
        wait_until(lambda: any(c.get("cmd") == "blmove" for c in r.client_list()), 10,
                   what="the worker to block in BLMOVE")
        for _ in range(20):
            os.kill(os.getpid(), signal.SIGTERM)

    sender = threading.Thread(target=storm)
    sender.start()
    assert worker.run() == ExitCode.OK
    sender.join()
    r.rpush("sig", "after")
    assert r.llen("sig") == 1 and not r.keys("{sig}:wp:processing:*")


def test_sigint_reaches_programs_a_worker_execs(worker):
    """SIG_IGN would be inherited across exec: a Ctrl+C could not stop a handler's subprocess."""
    assert signal.getsignal(signal.SIGINT) not in (signal.SIG_IGN, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)  # the worker itself ignores it (the master's to handle)


def test_a_real_worker_survives_two_sigterms_as_a_clean_stop(start_pool, redis_url, r):
    pool = start_pool(manifest("sig2", handler="handlers:echo", minWorkers=1, maxWorkers=1))
    pool.wait_workers(1, 0)
    [victim] = pool.workers()
    wait_until(lambda: any(c.get("cmd") == "blmove" for c in r.client_list()), 10, what="BLMOVE")
    victim.send_signal(signal.SIGTERM)
    victim.send_signal(signal.SIGTERM)
    pool.wait_for_event("worker exited", worker=victim.pid, reason="stopped", level="INFO")
    pool.assert_logs(prohibited=[{"event": "worker exited", "level": "WARNING"}])  # no crash
    assert redis.Redis.from_url(redis_url).llen("sig2") == 0
