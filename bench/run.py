"""Benchmarks of workerpool against an in-run floor, on a private redis-server.

    python -m bench [--tasks 20000] [--runs 3] [--json out.json]

Each figure is the median of --runs runs; the floor (a bare redis-py loop doing only the
reliable-queue claim and ack per task, BLMOVE + LREM) is measured in the same run so that a
ratio to it holds even when the machine's absolute speed drifts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import redis

from workerpool import Queue

ROOT = Path(__file__).resolve().parent.parent


def wait_until(pred: Callable[[], Any], timeout: float, interval: float = 0.002) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := pred()):
        if time.monotonic() > deadline:
            raise RuntimeError("benchmark timed out")
        time.sleep(interval)
    return value


def redis_server_binary() -> str:
    """Debian's redis-server (what the peer figures were measured with), else the one on PATH."""
    for candidate in ("/usr/bin/redis-server", shutil.which("redis-server")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise SystemExit("bench: no redis-server found (apt-get install redis-server)")


class Redis:
    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen([redis_server_binary(), "--port", str(self.port), "--save", "",
                                      "--appendonly", "no"], stdout=subprocess.DEVNULL)
        self.client = redis.Redis.from_url(self.url)
        wait_until(self._ping, 10)
        self.version = self.client.info()["redis_version"]

    def _ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


class Pool:
    """`workerpool run` for one pool, as a user runs it."""

    def __init__(self, url: str, name: str, log_level: str = "WARNING", src: Path | None = None,
                 **spec: Any) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="wp-bench-"))
        doc = {"apiVersion": "workerpool.dev/v1alpha1", "kind": "WorkerPool",
               "metadata": {"name": name}, "spec": {"handler": "bench.handlers:noop", **spec}}
        (self.dir / "pool.yaml").write_text(json.dumps(doc))
        self.log = self.dir / "pool.log"
        # src: another source tree's workerpool package (e.g. the previous commit's, extracted
        # with `git archive`), so that a figure is compared with it in the same run
        path = f"{src}:{ROOT}" if src else str(ROOT)
        env = {**os.environ, "PYTHONPATH": path, "REDIS_URL": url}
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "workerpool", "run",
                                          str(self.dir / "pool.yaml"), "--log-level", log_level],
                                         stdout=log, stderr=subprocess.STDOUT, env=env,
                                         cwd=src or ROOT)  # `-m` puts the cwd first on sys.path
        self.ps = psutil.Process(self.proc.pid)

    def worker_count(self) -> int:
        """Live (not yet reaped or zombie) children of the master, read cheaply from /proc."""
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                pids = f.read().split()
        except OSError:
            return 0
        alive = 0
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    alive += f.read().rsplit(")", 1)[1].split()[0] != "Z"
            except OSError:
                pass
        return alive

    def workers(self) -> list[psutil.Process]:
        out = []
        for c in self.ps.children():
            try:
                if "worker[" in " ".join(c.cmdline()) and c.status() != psutil.STATUS_ZOMBIE:
                    out.append(c)
            except psutil.NoSuchProcess:
                pass
        return out

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


# --- the floor ------------------------------------------------------------------------------

FLOOR = """
import sys, redis
r = redis.Redis.from_url(sys.argv[1]); q = sys.argv[2]; proc = q + ':floor:' + sys.argv[3]
print('ready', flush=True)
while True:
    item = r.blmove(q, proc, 1, 'LEFT', 'RIGHT')
    if item is None:
        break
    r.lrem(proc, 1, item)
"""


def fill(r: redis.Redis, key: str, n: int, payload: Callable[[int], Any] = lambda i: None) -> None:
    q = Queue(key, client=r)
    for start in range(0, n, 10000):
        q.enqueue_many(payload(i) for i in range(start, min(n, start + 10000)))


def floor_drain(rd: Redis, n: int) -> float:
    """Two bare processes: BLMOVE + LREM per task, nothing else."""
    r = rd.client
    r.flushall()
    fill(r, "staging", n)
    procs = [subprocess.Popen([sys.executable, "-c", FLOOR, rd.url, "floorq", str(i)],
                              stdout=subprocess.PIPE, text=True) for i in range(2)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    t0 = time.perf_counter()
    r.rename("staging", "floorq")
    wait_until(lambda: r.llen("floorq") == 0
               and not any(r.llen(f"floorq:floor:{i}") for i in range(2)), 300)
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.wait(10)
    return n / elapsed


# --- workerpool -----------------------------------------------------------------------------

def pool_drain(rd: Redis, n: int, log_level: str, src: Path | None = None) -> dict[str, float]:
    r = rd.client
    r.flushall()
    fill(r, "staging", n)
    pool = Pool(rd.url, "drain", log_level, src, minWorkers=2, maxWorkers=2)
    q = Queue("drain", client=r)
    try:
        wait_until(lambda: len(pool.workers()) == 2 and q.stats()["masters"], 30)
        uss_idle = [w.memory_full_info().uss / 2**20 for w in pool.workers()]
        r.config_resetstat()
        t0 = time.perf_counter()
        r.rename("staging", "drain")
        wait_until(lambda: int(r.hget("{drain}:wp:stats", "processed") or 0) >= n, 300)
        elapsed = time.perf_counter() - t0
        uss = [w.memory_full_info().uss / 2**20 for w in pool.workers()]
        stats = r.info("commandstats")
        calls = sum(v["calls"] for k, v in stats.items() if "evalsha" in k or "blmove" in k)
        return {"tasks_per_s": n / elapsed, "worker_uss_idle_mib": max(uss_idle),
                "worker_uss_after_mib": max(uss), "round_trips_per_task": calls / n}
    finally:
        pool.stop()


def pickup_latency(rd: Redis, n: int = 500, rate: float = 100.0) -> dict[str, float]:
    r = rd.client
    r.flushall()
    pool = Pool(rd.url, "pickup", handler="bench.handlers:pickup", minWorkers=2, maxWorkers=2)
    q = Queue("pickup", client=redis.Redis.from_url(rd.url))
    try:
        wait_until(lambda: len(pool.workers()) == 2 and q.stats()["masters"], 30)
        time.sleep(2)  # let the pool go idle: we measure an idle worker's pickup
        ids = []
        for _ in range(n):
            ids.append(q.enqueue({"t": time.time()}))
            time.sleep(1 / rate)  # pacing the producer, not synchronising
        lat = sorted(q.result(i, timeout=30) * 1000 for i in ids)
        return {"p50_ms": lat[len(lat) // 2], "p99_ms": lat[int(len(lat) * 0.99)]}
    finally:
        pool.stop()


def enqueue_rate(rd: Redis, n: int) -> float:
    r = rd.client
    r.flushall()
    q = Queue("enq", redis_url=rd.url)
    t0 = time.perf_counter()
    q.enqueue_many({"n": i} for i in range(n))
    return n / (time.perf_counter() - t0)


def burst(rd: Redis) -> dict[str, float]:
    """min 2, max 10, idle 1 s; 2,000 tasks of 50 ms; time to 10 workers and back to 2."""
    r = rd.client
    r.flushall()
    pool = Pool(rd.url, "burst", "INFO", handler="bench.handlers:sleep50", minWorkers=2, maxWorkers=10,
                idleTimeoutSeconds=1, prefetch=1)
    q = Queue("burst", client=r)
    try:
        wait_until(lambda: len(pool.workers()) == 2 and q.stats()["masters"], 30)
        t0 = time.perf_counter()
        q.enqueue_many({"n": i} for i in range(2000))
        wait_until(lambda: len(pool.workers()) == 10, 10, interval=0.001)
        to_max = time.perf_counter() - t0
        wait_until(lambda: int(r.hget("{burst}:wp:stats", "processed") or 0) >= 2000, 120, 0.001)
        drained = time.perf_counter()
        wait_until(lambda: len(pool.workers()) == 2, 30, interval=0.005)
        back = time.perf_counter() - drained
        log = pool.log.read_text()
        cpu0 = pool.ps.cpu_times()
        time.sleep(10)  # measuring the idle master's CPU over 10 s
        cpu1 = pool.ps.cpu_times()
        idle_cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / 10 * 100
    finally:
        pool.stop()
    log = pool.log.read_text()
    boot = [float(x) for x in re.findall(r"boot_ms=([\d.]+)", log)]
    return {"to_max_s": to_max, "back_to_min_s": back, "master_idle_cpu_pct": idle_cpu,
            "boot_ms_median": statistics.median(boot) if boot else float("nan")}


def lone_forks(rd: Redis, forks: int = 20) -> dict[str, float]:
    """fork() -> ready of single workers: SIGHUP toggles minWorkers 1 <-> 2, one fork each time."""
    rd.client.flushall()
    pool = Pool(rd.url, "lone", "INFO", minWorkers=1, maxWorkers=2)
    q = Queue("lone", client=rd.client)
    doc = json.loads((pool.dir / "pool.yaml").read_text())
    try:
        wait_until(lambda: len(pool.workers()) == 1 and q.stats()["masters"], 30)
        for _ in range(forks):
            for size in (2, 1):
                doc["spec"]["minWorkers"] = size
                (pool.dir / "pool.yaml").write_text(json.dumps(doc))
                pool.proc.send_signal(signal.SIGHUP)
                wait_until(lambda size=size: len(pool.workers()) == size, 10)
    finally:
        pool.stop()
    boot = [float(x) for x in re.findall(r"boot_ms=([\d.]+)", pool.log.read_text())][1:]
    return {"boot_ms_median": statistics.median(boot)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rd = Redis()
    runs: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        runs.setdefault(key, []).append(value)

    try:
        for _ in range(args.runs):
            add("floor_tasks_per_s", floor_drain(rd, args.tasks))
            for level in ("WARNING", "INFO"):
                for k, v in pool_drain(rd, args.tasks, level).items():
                    add(f"drain_{level.lower()}_{k}", v)
            for k, v in pickup_latency(rd).items():
                add(f"pickup_{k}", v)
            add("enqueue_many_per_s", enqueue_rate(rd, 100000))
            for k, v in burst(rd).items():
                add(f"burst_{k}", v)
            for k, v in lone_forks(rd).items():
                add(f"lone_fork_{k}", v)
    finally:
        rd.stop()
    report(runs, rd.version, args.json)


def report(runs: dict[str, list[float]], redis_version: str, out: Path | None) -> None:
    med = {k: statistics.median(v) for k, v in runs.items()}
    floor = med["floor_tasks_per_s"]
    print(f"machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}, "
          f"Redis {redis_version}; median of {len(runs['floor_tasks_per_s'])} runs (min-max)")
    print(f"{'figure':40} {'median':>10} {'min':>10} {'max':>10} {'vs floor':>9}")
    for k, v in runs.items():
        ratio = f"{med[k] / floor:8.2f}x" if k.endswith("tasks_per_s") else ""
        print(f"{k:40} {med[k]:10.2f} {min(v):10.2f} {max(v):10.2f} {ratio:>9}")
    if out:
        out.write_text(json.dumps({"median": med, "runs": runs, "redis": redis_version}, indent=2))


if __name__ == "__main__":
    main()
