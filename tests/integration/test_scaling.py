"""Permanent workers stay at minWorkers; a backlog forks temporaries up to max; idle ones exit."""

from __future__ import annotations

import json
import signal

import yaml
from helpers import ANY, at_least, containing, manifest, wait_until

from workerpool import Queue


def test_burst_scales_to_max_then_back_to_min(start_pool, redis_url):
    pool = start_pool(manifest("burst", handler="handlers:record", minWorkers=3, maxWorkers=10,
                               idleTimeoutSeconds=1, prefetch=1))
    pool.wait_workers(3, 0)
    permanent_pids = {w.pid for w in pool.workers("permanent")}
    q = Queue("burst", redis_url=redis_url)
    q.enqueue_many({"s": 0.05, "n": n} for n in range(300))
    pool.wait_workers(3, 7, timeout=5)
    assert pool.count("permanent") == 3  # permanent workers never exceed minWorkers
    wait_until(lambda: q.stats()["processed"] == 300, 30, what="all 300 tasks served")
    pool.wait_workers(3, 0, timeout=10)  # idleTimeoutSeconds=1: the temporaries leave on their own
    assert {w.pid for w in pool.workers("permanent")} == permanent_pids  # they never left
    temporaries = {e["worker"] for e in pool.events("worker forked", worker_role="temporary")}
    assert len(temporaries) >= 7
    # every temporary left because it was idle: it says so, and so does the master (reaping it
    # may come a moment after the process is gone)
    assert {e["pid"] for e in pool.events("worker exiting", role="temporary", reason="idle")} == temporaries
    exited = pool.wait_for_event("worker exited", worker_role="temporary", count=len(temporaries))
    assert {(e["worker"], e["reason"], e["level"]) for e in exited} == {
        (pid, "idle", "INFO") for pid in temporaries}
    pool.assert_logs(prohibited=[{"event": "worker exited", "worker_role": "permanent"}])


def test_crashed_permanent_worker_is_replaced(start_pool):
    pool = start_pool(manifest("replace", handler="handlers:echo", minWorkers=2, maxWorkers=2))
    pool.wait_workers(2, 0)
    victim = pool.workers()[0]
    victim.kill()
    wait_until(lambda: victim.pid not in {w.pid for w in pool.workers()} and pool.count() == 2,
               10, what="a replacement worker")
    pool.assert_logs([{"event": "worker exited", "worker": victim.pid, "reason": "killed by SIGKILL",
                       "level": "WARNING"}])


def reload(pool, doc, **changes):
    """Edit the pool's file and send SIGHUP, as a user would."""
    doc["spec"].update(changes)
    pool.write(doc)
    pool.signal(signal.SIGHUP)


def test_sighup_applies_new_sizes_and_timeouts_without_dropping_tasks(start_pool, redis_url, r):
    doc = manifest("resize", handler="handlers:record", minWorkers=2, maxWorkers=6, prefetch=1)
    pool = start_pool(doc)
    pool.wait_workers(2, 0)
    reload(pool, doc, minWorkers=4)
    pool.wait_workers(4, 0)
    q = Queue("resize", redis_url=redis_url)
    q.enqueue_many({"s": 0.3, "n": n, "tag": "hup"} for n in range(8))
    wait_until(lambda: q.stats()["in_flight"] >= 4, 10, what="tasks in hand")
    old = {w.pid for w in pool.workers()}
    reload(pool, doc, minWorkers=1, maxWorkers=1, taskTimeoutSeconds=60)  # a worker-level change
    wait_until(lambda: q.stats()["processed"] == 8, 20, what="every task served across the reload")
    pool.wait_workers(1, 0)
    assert not old & {w.pid for w in pool.workers()}  # workers replaced, gracefully
    assert sorted(json.loads(x)["n"] for x in r.lrange("served:hup", 0, -1)) == list(range(8))
    pool.assert_logs(prohibited=[{"level": at_least("WARNING")}])  # no worker killed or crashed


def test_sighup_with_a_bad_file_keeps_running(start_pool):
    doc = manifest("badhup", handler="handlers:echo", minWorkers=2, maxWorkers=2)
    pool = start_pool(doc)
    pool.wait_workers(2, 0)
    reload(pool, doc, minWorkers=5)
    [failed] = pool.wait_for_event("reload failed; keeping the running configuration", level="ERROR")
    assert "spec.minWorkers" in failed["error"]
    assert pool.count() == 2 and pool.proc.poll() is None


def test_recycled_after_max_tasks(start_pool, redis_url):
    pool = start_pool(manifest("recycle", handler="handlers:echo", minWorkers=1, maxWorkers=1,
                               maxTasksPerWorker=5, prefetch=1))
    q = Queue("recycle", redis_url=redis_url)
    ids = q.enqueue_many(range(12))
    assert [q.result(i, timeout=20) for i in ids] == list(range(12))
    recycled = pool.wait_for_event("worker exited", reason="recycled", level="INFO", count=2)
    said = {e["pid"]: e["reason"] for e in pool.events("worker recycling")}
    assert all(said[e["worker"]] == "served 5 tasks (maxTasksPerWorker)" for e in recycled)
    pool.wait_workers(1, 0)


def test_recycled_above_max_memory(start_pool, redis_url):
    pool = start_pool(manifest("memory", handler="handlers:echo", minWorkers=1, maxWorkers=1,
                               maxMemoryMiB=1, prefetch=1))  # every worker uses more than 1 MiB
    q = Queue("memory", redis_url=redis_url)
    ids = q.enqueue_many(range(3))
    assert [q.result(i, timeout=20) for i in ids] == [0, 1, 2]
    pool.wait_for_event("worker recycling", reason=containing("> maxMemoryMiB=1"))
    pool.wait_for_event("worker exited", reason="recycled", level="INFO")
    pool.wait_workers(1, 0)


def test_worker_exit_during_a_redis_outage_does_not_kill_the_master(start_pool, tmp_path):
    from helpers import RedisServer

    own = RedisServer(tmp_path).start()
    try:
        pool = start_pool(manifest("exit-outage", handler="handlers:echo", minWorkers=2,
                                   maxWorkers=2), url=own.url)
        pool.wait_workers(2, 0)
        own.stop()
        victim = pool.workers()[0]
        victim.kill()
        pool.wait_for_event("worker exited", worker=victim.pid, reason="killed by SIGKILL")
        own.start()
        pool.wait_workers(2, 0)
        q = Queue("exit-outage", redis_url=own.url)
        assert q.result(q.enqueue("ok"), timeout=20) == "ok"
        assert pool.proc.poll() is None
        pool.assert_logs(prohibited=[{"traceback": ANY}, {"level": "CRITICAL"}])
        assert pool.stop() == 0
    finally:
        own.stop()


def test_sighup_moves_a_pool_to_another_queue_and_adds_and_removes_pools(start_pool, redis_url, r):
    doc = manifest("mover", handler="handlers:record", queue="old-q", minWorkers=2, maxWorkers=2)
    pool = start_pool(doc)
    pool.wait_workers(2, 0)
    old = {w.pid for w in pool.workers()}
    Queue("old-q", redis_url=redis_url).enqueue({"s": 0.5, "n": 1, "tag": "mv"})
    wait_until(lambda: r.llen("started:mv") == 1, 10, what="a task running on the old queue")
    extra = manifest("extra", handler="handlers:echo", minWorkers=1, maxWorkers=1)
    doc["spec"]["queue"] = "new-q"
    pool.file.write_text(yaml.safe_dump_all([doc, extra]))
    pool.signal(signal.SIGHUP)
    pool.wait_workers(3, 0)  # 2 on the new queue + 1 for the added pool
    wait_until(lambda: not old & {w.pid for w in pool.workers()}, 10, what="old workers drained")
    assert [json.loads(x)["n"] for x in r.lrange("served:mv", 0, -1)] == [1]  # finished, not cut
    new_q, extra_q = Queue("new-q", redis_url=redis_url), Queue("extra", redis_url=redis_url)
    served_by = new_q.result(new_q.enqueue("x"), timeout=10)["served_by"]
    assert served_by in {w.pid for w in pool.workers()} - old
    assert extra_q.result(extra_q.enqueue("y"), timeout=10) == "y"
    pool.write(manifest("extra", handler="handlers:echo", minWorkers=1, maxWorkers=1))
    pool.signal(signal.SIGHUP)  # "mover" left the file: it drains away
    pool.wait_workers(1, 0)
    assert Queue("old-q", redis_url=redis_url).stats()["masters"] == []
    assert pool.stop() == 0

