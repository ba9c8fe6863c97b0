"""Redis errors of any kind never kill the master; what truly surprises it ends in a drain."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml
from helpers import ANY, ROOT, TESTS, EventLog, containing, manifest, wait_until

from workerpool import Queue


def test_a_key_of_the_wrong_type_is_reported_and_ridden_out(start_pool, redis_url, r):
    pool = start_pool(manifest("wt", handler="handlers:hostile", minWorkers=1, maxWorkers=2))
    pool.wait_workers(1, 0)
    r.set("wt", "a user reused the queue's key")
    failed = pool.wait_for_event("redis command failed", error=containing("WRONGTYPE"), level="ERROR")
    assert all((e["command"], e["key"]) in {("PROMOTE", "wt"), ("BLMOVE", "wt")} for e in failed)
    assert pool.proc.poll() is None
    r.delete("wt")
    q = Queue("wt", redis_url=redis_url)
    assert q.result(q.enqueue({"value": 1}), timeout=30) == {"value": 1}
    assert pool.stop() == 0


def test_out_of_memory_is_ridden_out(start_pool, redis_url, r):
    pool = start_pool(manifest("oom", handler="handlers:hostile", minWorkers=1, maxWorkers=2))
    pool.wait_workers(1, 0)
    q = Queue("oom", redis_url=redis_url)
    assert q.result(q.enqueue({"value": 1}), timeout=20) == {"value": 1}
    r.config_set("maxmemory-policy", "noeviction")
    r.config_set("maxmemory", 1)  # every write is refused: OOM command not allowed
    try:
        pool.wait_for_event("redis unavailable, retrying", error=containing("maxmemory"))
        assert pool.proc.poll() is None
    finally:
        r.config_set("maxmemory", 0)
    assert q.result(q.enqueue({"value": 2}), timeout=30) == {"value": 2}
    assert pool.stop() == 0


# A master whose loop meets a truly unexpected error once a key says so.
EXPLODING_MASTER = """
import sys
import workerpool.master.pool as pool
from workerpool.cli import main

original = pool.Pool.tick
def tick(self, now):
    original(self, now)
    if self.upkeep.redis.exists("explode"):
        raise RuntimeError("boom\\nsecond line")
pool.Pool.tick = tick
sys.argv = ["workerpool", "run", sys.argv[1], "--log-format", "json"]
main()
"""


def test_an_unexpected_error_in_the_master_drains_and_exits_non_zero(tmp_path, redis_url, r):
    doc = manifest("guard", handler="handlers:record", minWorkers=1, maxWorkers=1, prefetch=1)
    path = tmp_path / "guard.yaml"
    path.write_text(yaml.safe_dump(doc))
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{ROOT}", "REDIS_URL": redis_url}
    q = Queue("guard", redis_url=redis_url)
    q.enqueue({"s": 1.5, "tag": "guard", "n": 1})
    with open(tmp_path / "guard.log", "w") as log:
        master = subprocess.Popen([sys.executable, "-c", EXPLODING_MASTER, str(path)],
                                  stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
        try:
            wait_until(lambda: r.llen("started:guard"), 20, what="the task to start")
            r.set("explode", 1)
            code = master.wait(30)
        finally:
            master.kill()
            master.wait()
    assert code == 1
    assert [json.loads(x)["n"] for x in r.lrange("served:guard", 0, -1)] == [1]  # drained, not cut
    log = EventLog(tmp_path / "guard.log")
    [failed] = log.events("master failed; draining the workers", level="CRITICAL")
    assert "RuntimeError: boom" in failed["error"] and "second line" in failed["error"]
    log.assert_logs([{"event": "master exiting", "code": 1}], prohibited=[{"traceback": ANY}])


def test_keys_of_ours_holding_foreign_bytes_do_not_kill_the_master(start_pool, redis_url, r):
    """A heartbeat member or a processing list whose name is not UTF-8 (written by hand)."""
    r.zadd("{odd}:wp:alive", {b"w:\xff\xfe": 0, b"m:\xff": 0})  # expired at once
    r.rpush(b"{odd}:wp:processing:\xff", b"task")
    pool = start_pool(manifest("odd", handler="handlers:hostile", minWorkers=1, maxWorkers=1))
    q = Queue("odd", redis_url=redis_url)
    wait_until(lambda: q.stats()["processed"] == 1, 10, what="the odd worker's task recovered and served")
    alive = r.zrange("{odd}:wp:alive", 0, -1)
    assert b"w:\xff\xfe" not in alive and b"m:\xff" not in alive  # forgotten, not left to fail again
    assert q.result(q.enqueue({"value": 1}), timeout=20) == {"value": 1}
    assert pool.proc.poll() is None
    assert pool.stop() == 0
