"""Any element a producer can push is served or dead-lettered with a reason; none wedges a
queue or kills the master."""

from __future__ import annotations

import json

import pytest
from helpers import manifest, wait_until

from workerpool import Queue

IMITATIONS = [  # text that starts like our envelope but is not one
    b'{"__wp__":1,"attempts":0,"id":"t1"',  # truncated
    b'{"__wp__":1,"attempts":0,"id":"t2"}',  # no payload
    b'{"__wp__":1,"attempts": 0,"id":"t3","payload":1}',  # a space after the colon
    b'{"__wp__":1,"attempts":99999999999,"id":"t4","payload":1}',  # beyond Lua's exact range
    b'{"__wp__":1,"attempts":-1,"id":"t5","payload":1}',
    b'{"__wp__":1,"attempts":0,"attempts":7,"id":"t6","payload":1}',  # Lua and Python disagree
    b'{"__wp__":1,"attempts":0,"id":5,"payload":1}',
    b'{"__wp__":1,"attempts":NaN,"id":"t8","payload":1}',
    b'{"__wp__":1,"attempts":0,"id":"t9","raw":5}',
    b'{"__wp__":1,"attempts":0,"id":"t10","payload":' + b"[" * 5000 + b"]" * 5000 + b"}",
]
POISON = [
    b"[" * 100_000,  # deeper than Python decodes (it raised RecursionError, not ValueError)
    b"[" * 3000 + b"]" * 3000,
    b"\xff\xfe not UTF-8 \x80",
    *IMITATIONS,
]


def served(r):
    return [x.decode() for x in r.lrange("served:all", 0, -1)]


def test_poison_elements_are_dead_lettered_with_a_reason_and_the_queue_flows(start_pool, redis_url, r):
    pool = start_pool(manifest("poison", handler="handlers:record", minWorkers=1, maxWorkers=2))
    q = Queue("poison", redis_url=redis_url)
    r.rpush("poison", *POISON)
    q.enqueue("after")
    wait_until(lambda: served(r) == ['"after"'], 20, what="the task behind the poison")
    dead = q.dead_letters()
    assert len(dead) == len(POISON) and all(d["error"].startswith("BadItem: ") for d in dead)
    assert sum("starts like a workerpool envelope" in d["error"] for d in dead) == len(IMITATIONS)
    assert sum("nested deeper" in d["error"] for d in dead) == 3  # two plain, one in an envelope
    by_bytes = {bytes(d["item_latin1"], "latin-1") for d in dead if "item_latin1" in d}
    assert by_bytes == {b"\xff\xfe not UTF-8 \x80"}  # kept byte for byte
    assert pool.proc.poll() is None
    pool.assert_logs(prohibited=["worker exited"])


def test_envelope_imitations_held_by_a_vanished_worker_do_not_kill_the_master(start_pool, redis_url, r):
    """RECOVER charges the first element of an orphaned list: imitations must not fail it."""
    r.rpush("{ghost}:wp:processing:gone.0.1", *IMITATIONS, b'{"__wp__":1,"attempts":0,"id":"ok","payload":1}')
    pool = start_pool(manifest("ghost", handler="handlers:hostile", minWorkers=1, maxWorkers=1,
                               maxRetries=0))
    q = Queue("ghost", redis_url=redis_url)
    assert q.result("ok", timeout=20) == 1
    wait_until(lambda: len(q.dead_letters()) == len(IMITATIONS), 20, what="the imitations dead-lettered")
    pool.assert_logs([{"event": "recovered tasks of a vanished worker", "worker_id": "gone.0.1",
                       "level": "WARNING"}])
    assert pool.proc.poll() is None and r.llen("ghost") == 0


@pytest.mark.parametrize(("text", "payload"), [
    (b"NaN", "NaN"), (b"Infinity", "Infinity"), (b"-Infinity", "-Infinity"),  # not JSON: text
    (b"[1, NaN]", "[1, NaN]"), (b'{"a": 1}', {"a": 1}), (b"12", 12), (b"hello", "hello"),
])
def test_foreign_text_is_json_only_if_strict_json(start_pool, redis_url, r, text, payload):
    start_pool(manifest("foreign", handler="handlers:record", minWorkers=1, maxWorkers=1))
    r.rpush("foreign", text)
    wait_until(lambda: served(r), 20, what="the foreign task")
    assert [json.loads(x) for x in served(r)] == [payload]


def test_a_foreign_producer_gets_a_result_by_pushing_our_envelope(start_pool, redis_url, r):
    start_pool(manifest("env", handler="handlers:hostile", minWorkers=1, maxWorkers=1))
    r.rpush("env", '{"__wp__":1,"attempts":0,"id":"from-go-1","payload":{"x":[1,2]}}')
    raw = wait_until(lambda: r.lrange("{env}:wp:result:from-go-1", 0, -1), 20, what="the result")
    assert json.loads(raw[0]) == {"status": "ok", "value": {"x": [1, 2]}}


def test_a_very_large_payload_is_served(start_pool, redis_url, r):
    start_pool(manifest("big", handler="handlers:hostile", minWorkers=1, maxWorkers=1))
    q = Queue("big", redis_url=redis_url)
    big = "x" * (16 << 20)
    assert q.result(q.enqueue({"blob": big}), timeout=60) == {"blob": big}
    r.rpush("big", json.dumps([big]))
    wait_until(lambda: q.stats()["processed"] == 2, 30, what="the foreign large task")
