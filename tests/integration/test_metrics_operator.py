"""The operator's /metrics: every master's numbers, merged, with a namespace label."""

from __future__ import annotations

import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest
from helpers import ROOT, TESTS, free_port, wait_until
from prometheus_client.parser import text_string_to_metric_families

from workerpool import Queue
from workerpool.spec import parse_spec
from workerpool.target import Target

pytest.importorskip("kopf")
from workerpool.operator.masters import Masters
from workerpool.operator.metrics import serve


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def _value(text: str, name: str, **labels: str) -> float | None:
    """The sum of the samples of `name` whose labels include `labels`."""
    found = [s.value for family in text_string_to_metric_families(text) for s in family.samples
             if s.name == name and labels.items() <= s.labels.items()]
    return sum(found) if found else None


def test_operator_serves_each_pools_metrics_with_its_namespace(tmp_path: Path, redis_url, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", f"{TESTS}:{ROOT}")
    monkeypatch.setenv("WORKERPOOL_METRICS_ADDRESS", "127.0.0.1:1")  # never inherited by a master
    masters = Masters(tmp_path / "state")
    masters.metrics = True
    port = free_port()
    server = serve(f"127.0.0.1:{port}", masters.state_dir, masters.running)
    try:
        for key, queue in (("team-a/emails", "qa"), ("team-b/emails", "qb")):
            spec = parse_spec("emails", {"handler": "metrics_handlers:sleepy", "queue": queue,
                                         "minWorkers": 1, "maxWorkers": 1, "maxRetries": 0})
            masters.start(key, spec, Target(redis_url))
        Queue("qa", redis_url=redis_url).enqueue_many([{"s": 0}] * 3)
        Queue("qb", redis_url=redis_url).enqueue_many([{"fail": True}] * 2)
        team_a = {"namespace": "team-a", "pool": "emails", "queue": "qa"}
        team_b = {"namespace": "team-b", "pool": "emails", "queue": "qb"}

        def counted() -> str | None:
            text = _scrape(port)
            done = (_value(text, "workerpool_tasks_total", outcome="ok", **team_a),
                    _value(text, "workerpool_tasks_total", outcome="dead_lettered", **team_b))
            return text if done == (3, 2) else None

        text = wait_until(counted, 30, what="both pools' counts on the operator's endpoint")
        assert _value(text, "workerpool_tasks_total", outcome="ok", **team_b) == 0
        assert _value(text, "workerpool_dead_letters", **team_b) == 2
        assert 'process_resident_memory_bytes{namespace="team-a",pool="emails"}' in text
        assert "workerpool_operator_masters 2.0" in text
        check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        assert check.returncode == 0 and not (check.stdout + check.stderr).strip(), check
    finally:
        started = list(masters.running.values())
        masters.stop_all()
        # the operator's log-forwarding threads end at the masters' EOF; then close their pipes
        wait_until(lambda: not [t for t in threading.enumerate() if t.name.startswith("log team-")], 10)
        for master in started:
            if master.proc.stdout:
                master.proc.stdout.close()
        server.shutdown()
        server.server_close()
    assert not list(masters.state_dir.glob("*.sock"))  # each master removed its socket on exit

