"""/metrics: a real Prometheus scrapes a running master; PromQL sees the exact counts."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import free_port, manifest, wait_until
from metrics_helpers import need, scrape

from workerpool import Queue, protocol


class Prometheus:
    """A private Prometheus on a loopback port, scraping one target every 200 ms."""

    def __init__(self, tmp: Path, target_port: int) -> None:
        self.port = free_port()
        config = tmp / "prometheus.yml"
        config.write_text(json.dumps({  # JSON is YAML
            "global": {"scrape_interval": "200ms", "scrape_timeout": "200ms"},
            "scrape_configs": [{"job_name": "workerpool",
                                "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}]}]}))
        self.log = open(tmp / "prometheus.log", "w")
        self.proc = subprocess.Popen(
            [need("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(self._ready, 60, 0.1, what="prometheus to be ready")

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def query(self, expr: str) -> float | None:
        """The value of an instant query that returns one series (None when it returns none)."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=5) as response:
            result = json.loads(response.read())["data"]["result"]
        assert len(result) <= 1, f"{expr} returned {len(result)} series"
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


@pytest.fixture
def metrics_port() -> int:
    return free_port()


@pytest.fixture
def prometheus(tmp_path: Path, metrics_port: int) -> Iterator[Prometheus]:
    server = Prometheus(tmp_path, metrics_port)
    yield server
    server.stop()


def test_prometheus_sees_exact_counts_that_survive_temporaries(start_pool, redis_url, metrics_port,
                                                              prometheus):
    ok, dead = 40, 5
    pool = start_pool(manifest("metered", handler="metrics_handlers:sleepy", minWorkers=1, maxWorkers=4,
                               idleTimeoutSeconds=0.5, maxRetries=0, prefetch=1),
                      "--metrics-address", f"127.0.0.1:{metrics_port}")
    pool.wait_workers(1, 0)
    q = Queue("metered", redis_url=redis_url)
    q.enqueue_many([{"s": 0.05}] * ok + [{"fail": True}] * dead)
    sel = '{pool="metered",queue="metered"}'

    def value(expr: str) -> float | None:
        return prometheus.query(expr.replace("SEL", sel[1:-1]))

    # temporaries were forked, served tasks, and all left again (idle)
    wait_until(lambda: value('sum(workerpool_forks_total{SEL,role="temporary"})') or 0, 30,
               0.1, what="a temporary worker to be forked")
    wait_until(lambda: value('sum(workerpool_tasks_total{SEL,outcome="ok"})') == ok, 30, 0.1,
               what=f"{ok} ok tasks in Prometheus")
    wait_until(lambda: value('sum(workerpool_workers{SEL,role="temporary"})') == 0
               and value('sum(workerpool_forks_total{SEL,role="temporary"})')
               == value('sum(workerpool_worker_exits_total{SEL,role="temporary",reason="idle"})'),
               30, 0.1, what="every temporary worker to exit idle")
    assert pool.count("temporary") == 0
    # their counts survived them: the exact totals, and a share of them done by temporaries
    assert value('sum(workerpool_tasks_total{SEL,outcome="ok"})') == ok
    assert value('sum(workerpool_tasks_total{SEL,outcome="dead_lettered"})') == dead
    assert value('sum(workerpool_tasks_total{SEL,outcome="retried"})') == 0
    assert value('sum(workerpool_tasks_total{SEL,role="temporary"})') > 0
    assert value("workerpool_task_duration_seconds_count" + sel) == ok + dead
    assert value("workerpool_task_queue_wait_seconds_count" + sel) == ok + dead
    assert value('workerpool_task_duration_seconds_bucket{SEL,le="0.025"}') == dead  # the fast failures
    assert value("workerpool_dead_letters" + sel) == dead
    assert value("workerpool_backlog" + sel) == 0
    assert value("workerpool_oldest_task_age_seconds" + sel) == 0
    assert value('sum(workerpool_workers{SEL,role="permanent"})') == 1
    assert value("workerpool_max_workers" + sel) == 4
    assert value("workerpool_redis_up" + sel) == 1
    assert value('process_resident_memory_bytes{job="workerpool"}') > 0


def test_backlog_busy_worker_and_oldest_task_age(start_pool, redis_url, metrics_port, r):
    pool = start_pool(manifest("waiting", handler="metrics_handlers:sleepy", minWorkers=1, maxWorkers=1,
                               shutdownGraceSeconds=0.1),
                      "--metrics-address", f"127.0.0.1:{metrics_port}")
    pool.wait_workers(1, 0)
    Queue("waiting", redis_url=redis_url).enqueue({"s": 60})  # keeps the only worker busy
    sel = '{pool="waiting",queue="waiting"}'
    wait_until(lambda: _sample(scrape(metrics_port), 'workerpool_workers{pool="waiting",queue="waiting",'
                               'role="permanent",state="busy"}') == 1, 15, what="a busy worker")
    # a task enqueued 90 s ago now waits at the head of the queue
    r.rpush("waiting", protocol.envelope("old", "{}", 0, protocol.now_ms() - 90_000))
    text = scrape(metrics_port)
    assert _sample(text, "workerpool_backlog" + sel) == 1
    assert _sample(text, "workerpool_in_flight" + sel) == 1
    assert 90 <= _sample(text, "workerpool_oldest_task_age_seconds" + sel) < 120


def _sample(text: str, series: str) -> float | None:
    """The value of one series (name and labels exactly as exposed) in an exposition text."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_promtool_accepts_our_exposition(start_pool, redis_url, metrics_port):
    start_pool(manifest("lint", handler="metrics_handlers:sleepy", minWorkers=1, maxWorkers=2),
               "--metrics-address", f"127.0.0.1:{metrics_port}").wait_workers(1, 0)
    Queue("lint", redis_url=redis_url).enqueue_many([{"s": 0}, {"fail": True}])
    wait_until(lambda: _sample(scrape(metrics_port), 'workerpool_dead_letters{pool="lint",queue="lint"}'),
               15, what="the failing task to be dead-lettered")
    text = scrape(metrics_port)
    check = subprocess.run([need("promtool"), "check", "metrics"], input=text, capture_output=True,
                           text=True)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), check
    assert "pid" not in text.replace("process_", "")  # no per-process labels
    assert "HTTP/1.1 404" in _raw(metrics_port, b"GET /nope HTTP/1.1\r\n\r\n")


def _raw(port: int, request: bytes) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        return s.recv(4096).decode()


@pytest.mark.parametrize("address", ["nope", "127.0.0.1:70000", "host:"])
def test_bad_metrics_address_is_a_one_line_error(tmp_path, redis_url, address):
    doc = tmp_path / "p.yaml"
    doc.write_text(json.dumps(manifest("bad", handler="metrics_handlers:sleepy")))
    env = {**os.environ, "REDIS_URL": redis_url, "WORKERPOOL_METRICS_ADDRESS": address,
           "PYTHONPATH": str(Path(__file__).parent.parent)}
    done = subprocess.run([sys.executable, "-m", "workerpool", "run", str(doc)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode != 0
    assert f"--metrics-address: {address!r} is invalid" in done.stderr
    assert "Traceback" not in done.stderr
