"""Redis errors of any kind never kill the master; what truly surprises it ends in a drain."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml
from helpers import ROOT, TESTS, manifest, wait_until

from workerpool import Queue


def test_a_key_of_the_wrong_type_is_reported_and_ridden_out(start_pool, redis_url, r):
    pool = start_pool(manifest("wt", handler="handlers:hostile", minWorkers=1, maxWorkers=2))
    pool.wait_workers(1, 0)
    r.set("wt", "a user reused the queue's key")
    wait_until(lambda: "redis command failed" in pool.log() and "WRONGTYPE" in pool.log(), 10,
               what="the WRONGTYPE error in the log")
    line = next(x for x in pool.log().splitlines() if "redis command failed" in x)
    assert ("wt" in line and "PROMOTE" in line) or "BLMOVE" in line  # names the key and the command
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
        wait_until(lambda: "redis unavailable" in pool.log(), 10, what="the OOM in the log")
        assert "maxmemory" in pool.log() and pool.proc.poll() is None
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
sys.argv = ["workerpool", "run", sys.argv[1]]
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
    text = (tmp_path / "guard.log").read_text()
    assert code == 1
    assert [json.loads(x)["n"] for x in r.lrange("served:guard", 0, -1)] == [1]  # drained, not cut
    failed = [x for x in text.splitlines() if "master failed; draining the workers" in x]
    assert len(failed) == 1 and "RuntimeError: boom" in failed[0] and "second line" in failed[0]
    assert "Traceback" not in text


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
