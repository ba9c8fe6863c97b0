"""W3C trace context: the producer's traceparent reaches the handler (and OpenTelemetry)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import manifest, wait_until

from workerpool import PayloadError, Queue, current_traceparent

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


def test_handler_reads_the_traceparent_across_a_retry(start_pool, redis_url):
    start_pool(manifest("traced", handler="tracing_handlers:traced", minWorkers=1, maxWorkers=1,
                        retryDelaySeconds=0))
    q = Queue("traced", redis_url=redis_url)
    assert q.result(q.enqueue({"fail_first": "a"}, traceparent=TRACEPARENT), timeout=20) == TRACEPARENT
    assert q.result(q.enqueue("no trace"), timeout=20) is None
    assert current_traceparent() is None  # outside a task


@pytest.mark.parametrize("bad", ["", "00-xyz", f"00-{TRACE_ID.upper()}-{PARENT_ID}-01",
                                 f"ff-{TRACE_ID}-{PARENT_ID}-01", f"00-{'0' * 32}-{PARENT_ID}-01",
                                 f'00-{TRACE_ID}-{PARENT_ID}-01","payload":1'])
def test_a_bad_traceparent_is_refused_before_anything_is_queued(redis_url, r, bad):
    q = Queue("traced", redis_url=redis_url)
    with pytest.raises(PayloadError, match=r"^traceparent: .* is not a W3C traceparent"):
        q.enqueue(1, traceparent=bad)
    assert r.llen("traced") == 0


def test_each_traced_task_runs_in_a_consumer_span_child_of_the_producers(start_pool, redis_url,
                                                                         tmp_path: Path, monkeypatch):
    pytest.importorskip("opentelemetry.sdk")
    spans = tmp_path / "spans.jsonl"
    monkeypatch.setenv("SPANS_FILE", str(spans))  # read by tracing_handlers in the master
    start_pool(manifest("spans", handler="tracing_handlers:traced", minWorkers=1, maxWorkers=1))
    q = Queue("spans", redis_url=redis_url)
    task_id = q.enqueue("x", traceparent=TRACEPARENT)
    assert q.result(task_id, timeout=20) == TRACEPARENT
    q.result(q.enqueue("untraced"), timeout=20)
    found = wait_until(lambda: spans.exists() and spans.read_text().splitlines(), 10, what="a span")
    [span] = [json.loads(line) for line in found]  # the untraced task made none
    assert (span["trace_id"], span["parent_id"]) == (TRACE_ID, PARENT_ID)
    assert (span["name"], span["kind"]) == ("spans process", "CONSUMER")
    assert span["attributes"]["messaging.message.id"] == task_id
