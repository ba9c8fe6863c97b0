"""Hostile entries in a queue's published numbers: `stats`, `top` and the status skip them, never crash."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import ROOT

from workerpool import protocol
from workerpool.operator import status as st
from workerpool.protocol import Keys, MasterReport, WorkerReport
from workerpool.queue import read_queue_stats

KEYS = Keys("hostile-stats")
GOOD = MasterReport("good", "p", "pod", 10, 1, 3, 1, 0, 1, (WorkerReport(11, "permanent", True, 0.5),),
                    crashes=2, last_crash="killed by SIGKILL", updated_at=1.0)


def _publish(r, entries: dict[bytes, bytes]) -> None:
    deadline = protocol.now_ms() + 60_000
    r.hset(KEYS.masters, mapping=entries)
    r.zadd(KEYS.alive, {Keys.alive_master(master_id): deadline for master_id in entries})
    r.zadd(KEYS.alive, {Keys.alive_worker(b"\xffw"): deadline})  # a worker id that is not UTF-8
    r.rpush(KEYS.processing_of(b"\xffw"), b"held")


def test_hostile_entries_are_skipped_and_named(r, redis_url):
    _publish(r, {b"good": GOOD.to_json().encode(), b"old": b'{"master": "old", "pid": "x"}',
                 b"junk": b"\xff{", b"\xfe": json.dumps([1, 2]).encode()})
    stats = read_queue_stats(r, KEYS)
    assert stats.masters == (GOOD,) and stats.in_flight == 1
    assert sorted(p.split(":")[0] for p in stats.unreadable) == ["master junk", "master old", "master \ufffd"]
    assert st.counts(stats, 10, "pod")["permanentWorkers"] == 1
    assert st.crash_event(stats, 10, "pod", 0) == (2, "2 worker(s) died abnormally; last: killed by SIGKILL")

    cli = [sys.executable, "-m", "workerpool"]
    shown = subprocess.run([*cli, "stats", "-q", KEYS.queue, "--redis-url", redis_url],
                           capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert shown.returncode == 0, shown.stderr
    assert "master pod:10 pool=p permanent=1" in shown.stdout and "skipped: master old" in shown.stderr
    as_json = subprocess.run([*cli, "stats", "-q", KEYS.queue, "--redis-url", redis_url, "--json"],
                             capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert json.loads(as_json.stdout)["masters"] == [json.loads(GOOD.to_json())]
    top = subprocess.run([*cli, "top", "--once", "-q", KEYS.queue, "--redis-url", redis_url],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert top.returncode == 0, top.stderr
    assert "pod:10" in top.stdout and "skipped: master junk" in top.stdout
