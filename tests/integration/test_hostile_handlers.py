"""User code is a hostile tenant: whatever a handler or errorHandler does, the task ends served,
retried or dead-lettered with a reason, attempts are counted and the pool carries on."""

from __future__ import annotations

import json
import signal

import psutil
import pytest
from helpers import containing, manifest, wait_until

from workerpool import Queue, TaskFailed

FAST_RETRIES = {"maxRetries": 1, "retryDelaySeconds": 0, "retryDelayMaxSeconds": 0}


def errors(r):
    return [json.loads(x) for x in r.lrange("errors", 0, -1)]


def hostile_pool(start_pool, name, **spec):
    doc = manifest(name, **{"handler": "handlers:hostile", "errorHandler": "handlers:on_error_hostile",
                            "minWorkers": 1, "maxWorkers": 2, **FAST_RETRIES, **spec})
    return start_pool(doc)


def test_results_and_errors_holding_lone_surrogates_are_recorded(start_pool, redis_url, r):
    pool = hostile_pool(start_pool, "surrogates")
    q = Queue("surrogates", redis_url=redis_url)
    assert q.result(q.enqueue({"do": "return_surrogate"}), timeout=20) == {"text": "a\udcffb"}
    with pytest.raises(TaskFailed, match="ValueError: bad") as failed:
        q.result(q.enqueue({"do": "raise_surrogate"}), timeout=20)
    assert failed.value.attempts == 2
    assert pool.proc.poll() is None
    pool.assert_logs(prohibited=["worker exited"])


@pytest.mark.parametrize(("behaviour", "error"), [
    ({"do": "return_set"}, "PayloadError: not JSON-serialisable"),
    ({"do": "raise_bad_str"}, "BadStr: <str() of the exception failed>"),
    ({"do": "raise_base"}, "Base: base"),
    ({"do": "keyboard_interrupt"}, "KeyboardInterrupt"),
    ({"do": "sys_exit", "code": 0}, "SystemExit"),
    ({"do": "os_exit", "code": 0}, "WorkerLost"),  # a clean exit inside a task is a crash
    ({"do": "os_exit", "code": 3}, "WorkerLost"),  # not "boot failed": the master stays up
    ({"do": "sigkill"}, "WorkerLost"),
])
def test_whatever_the_handler_does_the_task_ends_dead_with_its_attempts(
        start_pool, redis_url, r, behaviour, error):
    pool = hostile_pool(start_pool, "bad")
    q = Queue("bad", redis_url=redis_url)
    with pytest.raises(TaskFailed) as failed:
        q.result(q.enqueue(behaviour), timeout=60)
    assert error in failed.value.error and failed.value.attempts == 2
    assert r.llen("attempts") == 2  # maxRetries=1: two runs, no more
    wait_until(lambda: len(errors(r)) == 1, 20, what="one errorHandler report")
    assert errors(r)[0]["payload"] == behaviour  # the payload as enqueued
    assert q.result(q.enqueue({"value": 7}), timeout=30) == {"value": 7}  # the pool carries on
    assert pool.proc.poll() is None
    assert len(errors(r)) == 1  # called once per dead task


def test_a_retry_sees_the_payload_as_enqueued(start_pool, redis_url, r):
    hostile_pool(start_pool, "mutate", maxRetries=2)
    q = Queue("mutate", redis_url=redis_url)
    payload = {"do": "mutate_and_fail", "n": 1}
    with pytest.raises(TaskFailed, match="failed after changing its payload"):
        q.result(q.enqueue(payload), timeout=30)
    assert [json.loads(x) for x in r.lrange("seen", 0, -1)] == [payload] * 3
    wait_until(lambda: errors(r), 10, what="the errorHandler's report")
    assert errors(r)[0]["payload"] == payload


@pytest.mark.parametrize("on_error", [
    {"on_error": "sys_exit"}, {"on_error": "raise_base"}, {"on_error": "raise_bad_str"},
    {"on_error": "sleep", "on_error_args": {"s": 30}},  # hangs: its own time limit stops it
    {"on_error": "os_exit", "on_error_args": {"code": 0}},
])
def test_error_handler_misbehaving_is_called_once_and_costs_nothing(start_pool, redis_url, r, on_error):
    pool = hostile_pool(start_pool, "eh", maxRetries=0, taskTimeoutSeconds=1)
    q = Queue("eh", redis_url=redis_url)
    with pytest.raises(TaskFailed):
        q.result(q.enqueue({"do": "raise", **on_error}), timeout=30)
    wait_until(lambda: pool.events("errorHandler raised") or pool.events("worker exited"), 20,
               what="the errorHandler to end")
    assert q.result(q.enqueue({"value": 1}), timeout=30) == {"value": 1}
    assert len(errors(r)) == 1 and r.llen("{eh}:wp:dead") == 1
    assert pool.proc.poll() is None


@pytest.mark.slow
def test_error_handler_that_ignores_its_alarm_is_killed_and_not_called_again(start_pool, redis_url, r):
    pool = hostile_pool(start_pool, "ehkill", maxRetries=0, taskTimeoutSeconds=1)
    q = Queue("ehkill", redis_url=redis_url)
    task = {"do": "raise", "on_error": "ignore_alarm_and_sleep", "on_error_args": {"s": 60}}
    with pytest.raises(TaskFailed):
        q.result(q.enqueue(task), timeout=30)
    pool.wait_for_event("worker exited", reason="errorHandler timeout (killed)", timeout=30)
    assert q.result(q.enqueue({"value": 2}), timeout=30) == {"value": 2}
    assert len(errors(r)) == 1 and r.llen("{ehkill}:wp:dead") == 1


def test_a_handler_that_forks_serves_once_and_its_child_does_not_serve(start_pool, redis_url, r):
    pool = hostile_pool(start_pool, "forks", maxWorkers=1)
    q = Queue("forks", redis_url=redis_url)
    child = q.result(q.enqueue({"do": "fork"}), timeout=20)
    assert child > 0
    assert q.result(q.enqueue({"value": 3}), timeout=20) == {"value": 3}
    wait_until(lambda: not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE,
               10, what="the handler's forked child to leave")
    assert q.stats()["processed"] == 2 and pool.proc.poll() is None


def _ignores_sigint(pid: int) -> bool:
    with open(f"/proc/{pid}/status") as f:
        ignored = next(int(line.split()[1], 16) for line in f if line.startswith("SigIgn:"))
    return bool(ignored & (1 << (signal.SIGINT - 1)))


def test_processes_a_handler_starts_stop_with_the_pool(start_pool, redis_url, r):
    # maxTasksPerWorker=1: the worker exits after the task, so the master adopts the sleeper
    pool = hostile_pool(start_pool, "spawns", maxTasksPerWorker=1)
    q = Queue("spawns", redis_url=redis_url)
    sleepers = [q.result(q.enqueue({"do": "spawn"}), timeout=20) for _ in range(2)]
    for pid in sleepers:
        assert not _ignores_sigint(pid)  # a Ctrl+C still reaches what a handler exec'd
    wait_until(lambda: psutil.Process(sleepers[0]).ppid() == pool.proc.pid, 10,
               what="the master to adopt the orphaned sleeper")
    pool.signal(signal.SIGINT)
    assert pool.stop() == 0
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                   for p in sleepers)
    [stopping] = pool.events("stopping processes a handler left behind", level="WARNING")
    assert set(sleepers) <= {int(pid) for pid in stopping["pids"].split(",")}


def test_an_idle_worker_over_max_memory_is_recycled(start_pool, redis_url, r):
    pool = hostile_pool(start_pool, "leak", minWorkers=1, maxWorkers=1, maxMemoryMiB=60)
    q = Queue("leak", redis_url=redis_url)
    # the first task's check (memory fine) holds off the next check for a while: the second
    # task grows the worker, which then goes idle; it must not keep its memory
    assert q.result(q.enqueue({"do": "leak", "mib": 1}), timeout=20) == 1
    assert q.result(q.enqueue({"do": "leak", "mib": 120}), timeout=20) == 2
    pool.wait_for_event("worker recycling", reason=containing("> maxMemoryMiB=60"))
    pool.wait_workers(1, 0)


def test_a_task_that_kills_temporaries_with_a_clean_exit_ends_dead_lettered(start_pool, redis_url, r):
    """minWorkers=0: only temporaries serve; each death is charged, the backoff holds their forks."""
    pool = hostile_pool(start_pool, "temps", minWorkers=0, maxWorkers=2)
    q = Queue("temps", redis_url=redis_url)
    with pytest.raises(TaskFailed, match="WorkerLost"):
        q.result(q.enqueue({"do": "os_exit", "code": 0}), timeout=60)
    assert r.llen("attempts") == 2
    deaths = pool.events("worker exited", reason=containing("exited during a task"), level="WARNING")
    assert [e["worker_role"] for e in deaths] == ["temporary", "temporary"]  # each attempt's
    assert q.result(q.enqueue({"value": 5}), timeout=30) == {"value": 5}


@pytest.mark.parametrize(("behaviour", "logged"), [
    ("ignore_term", "user code replaced the worker's signal handlers; restored"),
    ("block_term", "user code blocked signals in the worker; unblocked"),
])
def test_a_handler_that_ignores_sigterm_does_not_stop_its_worker_from_draining(
        start_pool, redis_url, r, behaviour, logged):
    pool = hostile_pool(start_pool, "ignterm", minWorkers=1, maxWorkers=1)
    q = Queue("ignterm", redis_url=redis_url)
    assert q.result(q.enqueue({"do": behaviour}), timeout=20) is None
    assert pool.stop() == 0
    pool.assert_logs([{"event": logged, "level": "WARNING"}],
                     prohibited=["grace period over", "killing workers now"])
