"""Tasks are served, results stored, foreign payloads accepted, nothing silently dropped."""

from __future__ import annotations

import json

import pytest
from helpers import manifest, wait_until

from workerpool import Queue, ResultTimeout


def served(r, tag="all"):
    return [json.loads(x) for x in r.lrange(f"served:{tag}", 0, -1)]


def test_results_come_back_for_every_json_value(start_pool, redis_url):
    start_pool(manifest("echo", handler="handlers:echo", minWorkers=2, maxWorkers=2))
    q = Queue("echo", redis_url=redis_url)
    payloads = [{"a": [1, 2.5, None]}, 0, "", False, None, "text", 12345678901234567890, "ünï"]
    ids = [q.enqueue(p) for p in payloads]
    assert [q.result(i, timeout=15) for i in ids] == payloads
    assert q.stats()["processed"] == len(payloads)


def test_foreign_producers_rpush_json_or_text(start_pool, redis_url, r):
    start_pool(manifest("foreign", handler="handlers:record", minWorkers=1, maxWorkers=1))
    raw = ['{"to": "ada"}', "0", '""', "plain text", "false", "null", "[1, 2]"]
    r.rpush("foreign", *raw)
    wait_until(lambda: len(served(r)) == len(raw), 15, what="all foreign tasks served")
    assert sorted(map(json.dumps, served(r))) == sorted(
        json.dumps(json.loads(x) if x != "plain text" else x) for x in raw)


def test_invalid_utf8_is_dead_lettered_with_a_reason(start_pool, redis_url, r):
    start_pool(manifest("bytes", handler="handlers:record", minWorkers=1, maxWorkers=1))
    r.rpush("bytes", b"\xff\xfe not utf-8", '"fine"')
    q = Queue("bytes", redis_url=redis_url)
    wait_until(lambda: q.stats()["dead_lettered"] == 1 and served(r) == ["fine"], 15,
               what="bad element dead-lettered, good one served")
    [entry] = q.dead_letters()
    assert "UTF-8" in entry["error"]
    assert q.requeue_dead() == 1
    assert r.lrange("bytes", 0, -1) in ([b"\xff\xfe not utf-8"], [])  # requeued byte for byte


def test_result_times_out_clearly(redis_url):
    q = Queue("nobody-serves-this", redis_url=redis_url)
    task_id = q.enqueue(1)
    with pytest.raises(ResultTimeout, match=task_id):
        q.result(task_id, timeout=0.3)


def test_enqueue_many_keeps_order_and_ids(redis_url, r):
    q = Queue("bulk", redis_url=redis_url)
    ids = q.enqueue_many({"n": n} for n in range(2500))
    assert len(set(ids)) == 2500
    items = [json.loads(x) for x in r.lrange("bulk", 0, -1)]
    assert [i["payload"]["n"] for i in items] == list(range(2500))
    assert [i["id"] for i in items] == ids
