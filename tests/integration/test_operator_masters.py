"""The operator's Masters: one master per pool, even when two handlers start it at once."""

from __future__ import annotations

import os
import threading

import psutil
from helpers import ROOT, TESTS, manifest

from workerpool.operator.masters import Masters
from workerpool.spec import parse_manifest
from workerpool.target import Target


def _masters_running(path: str) -> list[psutil.Process]:
    out = []
    for p in psutil.Process().children():
        try:
            if path in p.cmdline() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            continue
    return out


def test_two_concurrent_starts_of_one_pool_leave_one_master(tmp_path, redis_url, monkeypatch):
    """The registry keeps one master per pool whoever calls it (once, two handlers did)."""
    monkeypatch.setenv("PYTHONPATH", f"{TESTS}{os.pathsep}{ROOT}")
    masters = Masters(tmp_path / "state")
    spec = parse_manifest(manifest("race", handler="handlers:echo", minWorkers=1, maxWorkers=1,
                                   shutdownGraceSeconds=5))
    barrier = threading.Barrier(2)

    def start() -> None:
        barrier.wait()
        masters.start("ns/race", spec, Target(redis_url))

    threads = [threading.Thread(target=start) for _ in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        running = _masters_running(str(masters._file("ns/race")))
        assert [p.pid for p in running] == [masters.running["ns/race"].pid]
    finally:
        masters.stop_all()
        for p in _masters_running(str(masters._file("ns/race"))):
            p.kill()
            p.wait()
