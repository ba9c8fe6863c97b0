"""kill -9 of a worker or of the master loses no task; orphans do not survive the master."""

from __future__ import annotations

import json
import os
import signal

import psutil
from helpers import manifest, wait_until

from workerpool import Queue


def served(r, tag):
    return [json.loads(x)["n"] for x in r.lrange(f"served:{tag}", 0, -1)]


def test_kill9_of_a_busy_worker_loses_nothing(start_pool, redis_url, r):
    pool = start_pool(manifest("k9w", handler="handlers:record", minWorkers=2, maxWorkers=2,
                               prefetch=1))
    q = Queue("k9w", redis_url=redis_url)
    q.enqueue_many({"s": 0.3, "n": n, "tag": "k9w"} for n in range(10))
    victim = wait_until(lambda: next((w for w in pool.workers() if _busy(q, w.pid)), None), 10,
                        what="a busy worker")
    victim.kill()
    wait_until(lambda: sorted(set(served(r, "k9w"))) == list(range(10)), 30,
               what="every task served despite the kill")
    pool.assert_logs(["returned tasks to the queue"])


def _busy(q, pid):
    return any(w["pid"] == pid and w["busy"] for m in q.stats()["masters"] for w in m["workers"])


def test_kill9_of_the_master_workers_exit_and_tasks_are_served_by_the_next(start_pool, redis_url, r):
    doc = manifest("k9m", handler="handlers:record", minWorkers=3, maxWorkers=3, prefetch=1)
    first = start_pool(doc)
    first.wait_workers(3, 0)
    q = Queue("k9m", redis_url=redis_url)
    q.enqueue_many({"s": 1.0, "n": n, "tag": "k9m"} for n in range(6))
    wait_until(lambda: sum(r.llen(k) for k in r.keys("{k9m}:wp:processing:*")) == 3, 10,
               what="3 tasks in hand")
    workers = first.workers()
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(5)
    # no orphans: every worker dies with its master (PR_SET_PDEATHSIG), well within 2 s
    wait_until(lambda: not any(_alive(w) for w in workers), 2, what="workers to die with the master")
    second = start_pool(doc)
    wait_until(lambda: sorted(set(served(r, "k9m"))) == list(range(6)), 30,
               what="the next master to serve every task")
    second.assert_logs([{"event": "recovered tasks of a vanished worker", "level": "WARNING"}])


def _alive(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_kill9_storm_during_a_batched_drain_loses_nothing(start_pool, redis_url, r):
    """Batch claims (prefetch) under repeated kill -9: every task served, duplicates counted."""
    pool = start_pool(manifest("storm", handler="handlers:record", minWorkers=2, maxWorkers=2,
                               prefetch=16), "--log-level", "WARNING")
    pool.wait_workers(2, 0)
    q = Queue("storm", redis_url=redis_url)
    total = 3000
    q.enqueue_many({"n": n, "tag": "storm", "s": 0.001} for n in range(total))
    kills = 0
    for _ in range(6):
        wait_until(lambda: pool.count() == 2, 10, what="2 workers")
        victim = pool.workers()[0]
        before = r.llen("served:storm")
        wait_until(lambda before=before: r.llen("served:storm") > before + 100 or q.backlog() == 0, 15,
                   what="progress before the next kill")
        victim.kill()
        kills += 1
        wait_until(lambda victim=victim: not _alive(victim), 5, what="the victim to be gone")
    wait_until(lambda: len(set(served(r, "storm"))) == total, 60, what="every task served")
    assert q.stats()["dead_lettered"] == 0
    duplicates = r.llen("served:storm") - total
    print(f"kills={kills} duplicates={duplicates}")
    assert duplicates <= kills * 17  # at most what the killed workers held


def test_workers_are_the_oom_killers_first_choice_and_the_master_is_not(start_pool):
    """Past a container's memory limit the kernel kills the process with the highest
    oom_score_adj: that must be a worker (replaced, its task retried), never the master."""
    pool = start_pool(manifest("oomadj", handler="handlers:record", minWorkers=2, maxWorkers=2))
    pool.wait_workers(2, 0)
    assert [_oom_score_adj(w.pid) for w in pool.workers()] == [1000, 1000]
    assert _oom_score_adj(pool.proc.pid) == _oom_score_adj(os.getpid())


def _oom_score_adj(pid: int) -> int:
    with open(f"/proc/{pid}/oom_score_adj") as f:
        return int(f.read())


def test_kill9_storm_while_batches_shrink_and_are_given_back_loses_nothing(start_pool, redis_url, r):
    """The claim path of short and slow tasks mixed (duration-sized batches, give-backs while
    a slow task runs, temporaries) under repeated kill -9: every task served, none dead."""
    pool = start_pool(manifest("gstorm", handler="handlers:record", minWorkers=2, maxWorkers=4,
                               idleTimeoutSeconds=1, prefetch=16), "--log-level", "WARNING")
    pool.wait_workers(2, 0)
    q = Queue("gstorm", client=r)
    total = 2000
    q.enqueue_many({"n": n, "tag": "gstorm", "s": 0.03 if n % 10 == 9 else 0.001}
                   for n in range(total))
    kills = 0
    for _ in range(6):
        # a permanent victim: a temporary may exit on its own before the kill
        victim = wait_until(lambda: pool.workers("permanent"), 10, what="a permanent worker")[0]
        before = r.llen("served:gstorm")
        wait_until(lambda before=before: r.llen("served:gstorm") > before + 100 or q.backlog() == 0,
                   15, what="progress before the next kill")
        victim.kill()
        kills += 1
        wait_until(lambda victim=victim: not _alive(victim), 5, what="the victim to be gone")
    wait_until(lambda: len(set(served(r, "gstorm"))) == total, 60, what="every task served")
    assert q.stats()["dead_lettered"] == 0
    duplicates = r.llen("served:gstorm") - total
    print(f"kills={kills} duplicates={duplicates}")
    assert duplicates <= kills * 17  # at most what the killed workers held
