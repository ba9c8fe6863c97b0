"""Redis Cluster: pools on queues held by different primaries serve, retry, dead-letter and
recover, the CLI reads them, and a CLUSTER FAILOVER mid-drain loses nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import ANY, ROOT, TESTS, containing, manifest, wait_until
from ledger_handlers import served
from topologies import ClusterSet

from workerpool import Queue
from workerpool.acl import acl_rules
from workerpool.protocol import Keys

pytestmark = pytest.mark.slow


def queues_on_each_primary(cluster: ClusterSet, stem: str) -> list[str]:
    """One queue name per primary: '<stem>-<i>' whose slot that primary holds now."""
    by_port: dict[int, str] = {}
    for i in range(200):
        name = f"{stem}-{i}"
        by_port.setdefault(cluster.node_of(name).port, name)
        if len(by_port) == 3:
            return list(by_port.values())
    raise AssertionError("no queue name for some primary")


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{ROOT}"}
    return subprocess.run([sys.executable, "-m", "workerpool", *args, "--redis-url", url],
                          capture_output=True, text=True, env=env, timeout=60)


def test_every_key_of_a_queue_shares_its_slot(cluster):
    """The CROSSSLOT pitfall: BLMOVE from the queue into a processing list, and the scripts,
    need one slot; queue names with and without a hash tag, and with glob characters."""
    client = cluster.client()
    for name in ("emails", "{tagged}q", "a*b?[c]", "ünï"):
        keys = Keys(name)
        slot = client.keyslot(name)
        for key in (keys.stats, keys.delayed, keys.dead, keys.alive, keys.masters, keys.seq,
                    keys.result("x"), keys.processing("w.1")):
            assert client.keyslot(key) == slot, (name, key)
        client.rpush(name, "t")
        assert client.blmove(name, keys.processing("w.1"), 1, "LEFT", "RIGHT") == b"t"
        client.delete(name, keys.processing("w.1"))
    client.close()


def test_pools_on_three_primaries_serve_retry_dead_letter_and_the_cli_reads_them(
        cluster, ledger, start_pool):
    names = queues_on_each_primary(cluster, "spread")
    pools = [start_pool(manifest(n, handler="ledger_handlers:flaky", minWorkers=1, maxWorkers=2,
                                 maxRetries=1, retryDelaySeconds=0.05), url=cluster.url)
             for n in names]
    ids = {}
    for k, name in enumerate(names):
        q = Queue(name, redis_url=cluster.url)
        # per queue: 10 served at once, 5 after one retry, 2 dead-lettered after two tries
        for i in range(17):
            n = k * 100 + i
            ids[n] = (q, q.enqueue({"n": n, "fail": 0 if i < 10 else 1 if i < 15 else 5}))
    for n, (q, task_id) in ids.items():
        if n % 100 < 15:
            assert q.result(task_id, timeout=60) == n
        else:
            with pytest.raises(Exception, match="fails"):
                q.result(task_id, timeout=60)
    for name in names:
        stats = json.loads(cli(cluster.url, "stats", "--queue", name, "--json").stdout)
        assert (stats["processed"], stats["retried"], stats["dead"]) == (15, 7, 2)
        assert stats["masters"] and stats["masters"][0]["permanent"] == 1
        dead = cli(cluster.url, "dead", "list", "--queue", name)
        assert dead.returncode == 0 and dead.stdout.count("attempts=2") == 2, dead.stderr
        requeued = cli(cluster.url, "dead", "requeue", "--queue", name)  # MULTI on the slot's node
        assert requeued.stdout.strip() == "requeued 2", requeued.stderr
    for p in pools:
        assert p.stop() == 0
        p.assert_logs(prohibited=[{"traceback": ANY}])


def test_kill9_of_a_worker_and_of_the_master_recovers_on_a_cluster(cluster, ledger, start_pool):
    name = queues_on_each_primary(cluster, "k9")[1]
    doc = manifest(name, queue=name, handler="ledger_handlers:note", minWorkers=2, maxWorkers=2, prefetch=1)
    first = start_pool(doc, url=cluster.url)
    first.wait_workers(2, 0, timeout=20)
    q = Queue(name, redis_url=cluster.url)
    q.enqueue_many({"n": n, "s": 0.5} for n in range(12))
    client = cluster.client()
    wait_until(lambda: client.llen(name) <= 10, 20, what="two tasks in hand")
    first.workers()[0].kill()  # kill -9 of a busy worker: the master returns its task
    wait_until(lambda: ledger.llen("served") >= 3, 30, what="serving to go on")
    workers = first.workers()
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(5)
    wait_until(lambda: not any(w.is_running() and w.status() != "zombie" for w in workers), 5,
               what="the workers to die with the master")
    second = start_pool({**doc, "metadata": {"name": "k9-second"}}, url=cluster.url)
    wait_until(lambda: {n for n, _ in served(ledger)} >= set(range(12)), 60,
               what="every task served; log:\n" + second.log()[-2000:])
    first.assert_logs(["returned tasks to the queue"])
    second.assert_logs([{"event": "recovered tasks of a vanished worker", "level": "WARNING"}])
    assert second.stop() == 0
    client.close()
    q.close()


def test_cluster_failover_mid_drain_loses_nothing(cluster, ledger, start_pool):
    name = queues_on_each_primary(cluster, "fo")[0]
    tasks = 1000
    pool = start_pool(manifest(name, handler="ledger_handlers:note", minWorkers=3, maxWorkers=3,
                               prefetch=4), url=cluster.url)
    q = Queue(name, redis_url=cluster.url)
    q.enqueue_many({"n": n, "s": 0.01} for n in range(tasks))
    primary = cluster.node_of(name)
    primary.client().wait(1, 5000)
    wait_until(lambda: ledger.llen("served") >= 200, 60, what="200 served before the failover")
    replica = cluster.replica_of(primary)
    started = time.time()
    replica.client().cluster("failover")
    wait_until(lambda: cluster.node_of(name).port == replica.port, 30, what="the replica promoted")
    promoted = time.time()
    wait_until(lambda: {n for n, _ in served(ledger)} >= set(range(tasks)), 120,
               what="every task served; log:\n" + pool.log()[-3000:])
    numbers = [n for n, _ in served(ledger)]
    lost, duplicated = tasks - len(set(numbers)), len(numbers) - len(set(numbers))
    print(f"\ncluster failover: lost {lost}, duplicated {duplicated}, "
          f"promoted after {promoted - started:.2f} s")
    assert lost == 0
    assert pool.proc.poll() is None
    assert pool.stop() == 0
    q.close()


def test_a_pool_and_the_cli_work_under_the_acl_on_a_cluster(cluster, start_pool):
    name = queues_on_each_primary(cluster, "acl")[2]
    for node in cluster.nodes:  # ACL users are per node
        node.client().execute_command("ACL", "SETUSER", "pool", "on", ">s3cret",
                                      *acl_rules(name, cluster=True).split())
    url = cluster.url.replace("://", "://pool:s3cret@")
    pool = start_pool(manifest(name, handler="handlers:echo", minWorkers=1, maxWorkers=1), url=url)
    q = Queue(name, redis_url=url)
    assert q.result(q.enqueue({"x": 1}), timeout=30) == {"x": 1}
    stats = cli(url, "stats", "--queue", name)
    assert stats.returncode == 0 and "processed      1" in stats.stdout, stats.stderr
    assert pool.stop() == 0
    pool.assert_logs(prohibited=["redis command failed", {"error": containing("no permissions")}])
    q.close()


def test_the_orphan_sweep_finds_lists_on_the_queues_node(cluster, ledger, start_pool):
    """A processing list whose worker is in no heartbeat (written by hand here) is found by
    the sweep's SCAN, which redis-py's Cluster client runs on every primary."""
    name = queues_on_each_primary(cluster, "sweep")[1]
    client = cluster.client()
    client.rpush(Keys(name).processing("ghost.0.1"), '{"n": 7, "s": 0}')
    pool = start_pool(manifest(name, handler="ledger_handlers:note", minWorkers=1, maxWorkers=1),
                      url=cluster.url)
    wait_until(lambda: [n for n, _ in served(ledger)] == [7], 30, what="the orphan served")
    pool.assert_logs([{"event": "recovered tasks of a vanished worker", "worker_id": "ghost.0.1"}])
    assert pool.stop() == 0
    client.close()
