"""Claim sizing and give-back: batches follow task durations; nothing is served twice."""

from __future__ import annotations

import json
import time

from helpers import manifest, wait_until

from workerpool import Queue, protocol
from workerpool.protocol import Keys


def _ack_claim(r, queue: str, worker: str, n_claim: int, back: list[bytes]):
    keys = Keys(queue)
    script = r.register_script(protocol.ACK_CLAIM)
    return script([queue, keys.processing(worker), keys.stats, keys.delayed, keys.dead],
                  [n_claim, 0, 0, len(back), *back])


def test_give_back_keeps_order_at_the_queue_head_and_is_not_repeated(r):
    r.rpush("gq", *[f"t{i}" for i in range(50)])  # deep: the claim is not cut to backlog/8
    claimed = _ack_claim(r, "gq", "w1", 5, [])[1:]
    assert claimed == [b"t0", b"t1", b"t2", b"t3", b"t4"]
    # the worker started t0 and gives back t1..t4, which go back in front of t5, in order
    assert _ack_claim(r, "gq", "w1", 0, claimed[1:])[0] == 49
    assert r.lrange("gq", 0, 4) == [b"t1", b"t2", b"t3", b"t4", b"t5"]
    assert r.lrange(Keys("gq").processing("w1"), 0, -1) == [b"t0"]
    # the same call again (a retry after a lost reply) pushes nothing twice
    assert _ack_claim(r, "gq", "w1", 0, claimed[1:])[0] == 49
    assert r.lrange("gq", 0, 5) == [b"t1", b"t2", b"t3", b"t4", b"t5", b"t6"]


def test_a_worker_of_slow_tasks_holds_only_the_one_it_runs(start_pool, redis_url, r):
    """50 ms tasks from a deep backlog: each worker's processing list never holds a second task
    (the old claim took up to `prefetch` more per flush; the others waited behind them)."""
    pool = start_pool(manifest("slow", handler="handlers:record", minWorkers=2, maxWorkers=2,
                               prefetch=16), "--log-level", "WARNING")
    pool.wait_workers(2, 0)
    q = Queue("slow", client=r)
    q.enqueue_many({"n": n, "tag": "slow", "s": 0.05} for n in range(40))
    most = 0
    deadline = time.monotonic() + 60
    # sample the processing lists as fast as we can until every task is done (a wait on a
    # condition with a deadline; sampling, not sleeping, so no second task slips by unseen)
    while int(r.hget(Keys("slow").stats, "processed") or 0) < 40:
        assert time.monotonic() < deadline, "timed out after 60 s waiting for 40 tasks"
        for key in r.scan_iter(Keys("slow").processing("*")):
            most = max(most, r.llen(key))
    assert most == 1
    assert sorted(json.loads(x)["n"] for x in r.lrange("served:slow", 0, -1)) == list(range(40))


def test_tasks_claimed_behind_a_slow_one_are_given_back_and_served_once(start_pool, redis_url, r):
    """Short tasks are claimed in batches; a 200 ms task among them gives the rest back."""
    pool = start_pool(manifest("mix", handler="handlers:record", minWorkers=2, maxWorkers=2,
                               prefetch=16), "--log-level", "INFO")
    pool.wait_workers(2, 0)
    q = Queue("mix", client=r)
    total = 800
    q.enqueue_many({"n": n, "tag": "mix", "s": 0.2 if n % 40 == 39 else 0.001}
                   for n in range(total))
    wait_until(lambda: int(r.hget(Keys("mix").stats, "processed") or 0) >= total, 60,
               what="every task processed")
    assert pool.stop() == 0
    served = [json.loads(x)["n"] for x in r.lrange("served:mix", 0, -1)]
    assert sorted(served) == list(range(total))  # each exactly once
    given_back = sum(e["gave_back"] for e in pool.events("worker exiting"))
    assert given_back > 0, pool.events("worker exiting")
    assert r.llen("mix") == 0
