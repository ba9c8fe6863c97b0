"""The cost of ?wait_replicas=1 (WAIT for one replica on enqueue and on acknowledgement).

A primary and one replica on loopback; the same runs with and without the option:
single enqueues (latency per call) and a pool draining noop tasks (tasks/s).

    python -m bench.replication [--tasks 5000] [--enqueues 1000] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from workerpool import Queue

from .run import Pool, Redis, fill, redis_server_binary, wait_until


def replica_of(primary: Redis) -> subprocess.Popen[bytes]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # its own directory: a replica writes the primary's snapshot to disk during the first sync
    work = tempfile.mkdtemp(prefix="wp-bench-replica-")
    proc = subprocess.Popen([redis_server_binary(), "--port", str(port), "--save", "",
                             "--appendonly", "no", "--dir", work,
                             "--replicaof", "127.0.0.1", str(primary.port)],
                            stdout=subprocess.DEVNULL)
    # online, not just connected: during the first sync a replica acknowledges nothing
    wait_until(lambda: primary.client.info("replication").get("slave0", {}).get("state") == "online", 20)
    return proc


def enqueue_latency_us(url: str, n: int) -> dict[str, float]:
    q = Queue("lat", redis_url=url)
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        q.enqueue(i)
        times.append((time.perf_counter() - t0) * 1e6)
    q.close()
    times.sort()
    return {"p50_us": statistics.median(times), "p99_us": times[int(n * 0.99)]}


def drain_rate(rd: Redis, url: str, n: int) -> float:
    r = rd.client
    r.flushall()
    fill(r, "staging", n)
    pool = Pool(url, "drain", minWorkers=2, maxWorkers=2)
    q = Queue("drain", client=r)
    try:
        wait_until(lambda: len(pool.workers()) == 2 and q.stats()["masters"], 30)
        t0 = time.perf_counter()
        r.rename("staging", "drain")
        wait_until(lambda: int(r.hget(q.keys.stats, "processed") or 0) >= n, 300)
        return n / (time.perf_counter() - t0)
    finally:
        pool.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--enqueues", type=int, default=1000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    primary = Redis()
    replica = replica_of(primary)
    results: dict[str, dict[str, float]] = {}
    try:
        for label, url in (("off", primary.url), ("wait_replicas=1", primary.url + "?wait_replicas=1")):
            primary.client.flushall()
            results[label] = {**enqueue_latency_us(url, args.enqueues),
                              "drain_tasks_per_s": drain_rate(primary, url, args.tasks)}
            print(label, {k: round(v, 1) for k, v in results[label].items()}, flush=True)
    finally:
        replica.terminate()
        replica.wait()
        primary.stop()
    if args.out:
        args.out.write_text(json.dumps({"redis": primary.version, "results": results}, indent=2))


if __name__ == "__main__":
    main()
