"""`workerpool operator --metrics-address`: one endpoint with every pool's numbers."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import pytest
from helpers import free_port, wait_until
from prometheus_client.parser import text_string_to_metric_families
from test_operator import NS, Operator, apply, cluster, pool_doc  # noqa: F401 - `cluster` is a fixture

from workerpool import Queue


def _value(text: str, name: str, **labels: str) -> float | None:
    found = [s.value for family in text_string_to_metric_families(text) for s in family.samples
             if s.name == name and labels.items() <= s.labels.items()]
    return sum(found) if found else None


def test_operator_endpoint_serves_its_pools(cluster: Any, redis_url: str, tmp_path: Path,  # noqa: F811 - the fixture
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("WORKERPOOL_METRICS_ADDRESS", f"127.0.0.1:{port}")
    op = Operator(cluster, tmp_path)
    try:
        apply(cluster, pool_doc("metered", redis_url, minWorkers=1, maxWorkers=2))
        Queue("metered", redis_url=redis_url).enqueue_many([{"n": i} for i in range(3)])

        def scraped() -> str | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    text = r.read().decode()
            except OSError:
                return None
            done = _value(text, "workerpool_tasks_total", namespace=NS, pool="metered", outcome="ok")
            return text if done == 3 else None

        text = wait_until(scraped, 60, 0.2, what="the pool's 3 tasks on the operator's /metrics")
        assert _value(text, "workerpool_workers", namespace=NS, pool="metered", role="permanent") == 1
        assert _value(text, "workerpool_operator_masters") == 1
        cluster.kubectl("delete", "wp", "metered", "-n", NS, "--wait=true", "--timeout=60s")
    finally:
        code = op.stop()
    assert code == 0, op.log()[-3000:]
