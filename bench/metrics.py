"""What metrics cost: the drain with and without /metrics, and the scrape time with 100 workers.

    python -m bench.metrics [--tasks 20000] [--runs 5] [--base REF] [--json out.json]

Three variants drain the same queue with 2 workers (noop handler, log level WARNING), runs
interleaved so that drift on a shared machine hits each alike:
- base: the code at git REF (before the slot counters existed), from `git archive`;
- off:  this tree, no --metrics-address (the workers still count in their slots);
- on:   this tree, /metrics served and scraped every 0.5 s during the drain (a harsh Prometheus).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import redis

from workerpool.protocol import Keys

from .run import ROOT, Redis, fill, wait_until

SCRAPE_EVERY_S = 0.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Master:
    """`workerpool run` from `code` (a source tree), optionally serving /metrics."""

    def __init__(self, code: Path, url: str, name: str, workers: int, metrics_port: int | None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="wp-bench-metrics-"))
        doc = {"apiVersion": "workerpool.dev/v1alpha1", "kind": "WorkerPool", "metadata": {"name": name},
               "spec": {"handler": "bench.handlers:noop", "minWorkers": workers, "maxWorkers": workers}}
        (self.dir / "pool.yaml").write_text(json.dumps(doc))
        extra = ["--metrics-address", f"127.0.0.1:{metrics_port}"] if metrics_port else []
        env = {**os.environ, "PYTHONPATH": str(code), "REDIS_URL": url, "PYTHONDONTWRITEBYTECODE": "1"}
        with open(self.dir / "pool.log", "w") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "workerpool", "run",
                                          str(self.dir / "pool.yaml"), "--log-level", "WARNING", *extra],
                                         stdout=log, stderr=subprocess.STDOUT, env=env, cwd=code)
        r = redis.Redis.from_url(url)
        try:  # ready when the master published all its workers
            wait_until(lambda: any(json.loads(m).get("permanent") == workers
                                   for m in r.hvals(Keys(name).masters)), 120)
        except BaseException:
            self.stop()
            raise
        finally:
            r.close()

    def workers_cpu_s(self) -> float:
        """User + system CPU seconds of the master and its workers so far."""
        total = 0.0
        for p in [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children()]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


def scrape(port: int) -> float:
    """Seconds for one GET /metrics."""
    t0 = time.perf_counter()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        r.read()
    return time.perf_counter() - t0


def drain(rd: Redis, code: Path, n: int, metrics: bool) -> tuple[float, float]:
    """Tasks per second, and the pool's CPU microseconds per task (less sensitive to a busy machine)."""
    r = rd.client
    r.flushall()
    fill(r, "staging", n)
    port = free_port() if metrics else None
    master = Master(code, rd.url, "drain", 2, port)
    stop = threading.Event()
    scraper = threading.Thread(target=_scrape_until, args=(port, stop), daemon=True) if port else None
    try:
        cpu0 = master.workers_cpu_s()
        t0 = time.perf_counter()
        r.rename("staging", "drain")
        if scraper:
            scraper.start()
        wait_until(lambda: int(r.hget("{drain}:wp:stats", "processed") or 0) >= n, 300)
        elapsed = time.perf_counter() - t0
        return n / elapsed, (master.workers_cpu_s() - cpu0) / n * 1e6
    finally:
        stop.set()
        if scraper:
            scraper.join()
        master.stop()


def _scrape_until(port: int, stop: threading.Event) -> None:
    while not stop.wait(SCRAPE_EVERY_S):  # pacing the scraper, like Prometheus' interval
        scrape(port)


def scrape_with_workers(rd: Redis, workers: int = 100, scrapes: int = 30) -> dict[str, float]:
    rd.client.flushall()
    port = free_port()
    master = Master(ROOT, rd.url, "wide", workers, port)
    try:
        times = sorted(scrape(port) for _ in range(scrapes))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            size = len(r.read())
    finally:
        master.stop()
    return {"scrape_ms_median": statistics.median(times) * 1000, "scrape_ms_max": times[-1] * 1000,
            "exposition_bytes": size}


def base_tree(ref: str) -> Path:
    """The code at `ref`, exported to a temporary directory (no checkout: other worktrees share git)."""
    out = Path(tempfile.mkdtemp(prefix="wp-bench-base-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "workerpool", "bench"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--base", default="4cf8520", help="git ref without the slot counters")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    variants = {"base": (base_tree(args.base), False), "off": (ROOT, False), "on": (ROOT, True)}
    rd = Redis()
    runs: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    try:
        for _ in range(args.runs):
            for name, (code, metrics) in variants.items():
                rate, cpu_us = drain(rd, code, args.tasks, metrics)
                runs[name].append(rate)
                cpu[name].append(cpu_us)
        wide = scrape_with_workers(rd)
    finally:
        rd.stop()
        shutil.rmtree(variants["base"][0], ignore_errors=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
    print(f"drain of {args.tasks} noop tasks by 2 workers, {args.runs} interleaved runs:")
    print("         tasks/s: median   best   vs base (median, best)   pool CPU µs/task: median   vs base")
    for name, values in runs.items():
        vs_base = 100 * (med[name] / med["base"] - 1)
        print(f"  {name:5} {med[name]:15.0f} {max(values):7.0f}   {vs_base:+6.1f} %"
              f" {100 * (max(values) / max(runs['base']) - 1):+6.1f} %      {cpu_med[name]:19.2f}"
              f"   {100 * (cpu_med[name] / cpu_med['base'] - 1):+6.1f} %")
    print(f"GET /metrics with 100 workers alive: median {wide['scrape_ms_median']:.2f} ms, "
          f"max {wide['scrape_ms_max']:.2f} ms, {wide['exposition_bytes']} bytes")
    if args.json:
        out: dict[str, Any] = {"runs": runs, "median": med, "cpu_us_per_task": cpu, "cpu_median": cpu_med,
                               "scrape_100_workers": wide}
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
