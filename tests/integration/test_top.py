"""`workerpool top` in a real terminal (tmux, 80x24): a live pool's workers and backlog; q quits."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ROOT, TESTS, manifest, wait_until

from workerpool import Queue


class Tmux:
    """A private tmux server (its own socket) running one command in an 80x24 window."""

    def __init__(self, tmp: Path) -> None:
        binary = shutil.which("tmux")
        if binary is None:
            if os.environ.get("CI") == "true":
                pytest.fail("tmux is missing in CI (apt-get install tmux)")
            pytest.skip("tmux is not installed")
        self.base = [binary, "-S", str(tmp / "tmux.sock"), "-f", "/dev/null"]

    def tmux(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=30)

    def start(self, command: str) -> None:
        done = self.tmux("new-session", "-d", "-s", "top", "-x", "80", "-y", "24", command)
        assert done.returncode == 0, done.stderr

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "top").stdout

    def alive(self) -> bool:
        return self.tmux("has-session", "-t", "top").returncode == 0

    def kill(self) -> None:
        self.tmux("kill-server")


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Tmux]:
    t = Tmux(tmp_path)
    yield t
    t.kill()


@pytest.mark.parametrize("quit_key", ["q", "C-c"])
def test_top_shows_a_live_pools_workers_and_backlog(start_pool, redis_url, terminal, tmp_path, quit_key):
    pool = start_pool(manifest("watched", handler="metrics_handlers:sleepy", minWorkers=2, maxWorkers=2,
                               shutdownGraceSeconds=0.1))
    pool.wait_workers(2, 0)
    q = Queue("watched", redis_url=redis_url)
    q.enqueue_many([{"s": 120}] * 2)  # both workers busy for the whole test
    wait_until(lambda: q.stats()["backlog"] == 0, 15, what="both tasks to be claimed")
    q.enqueue_many([{"s": 0}] * 5)
    exit_file = tmp_path / "top.exit"
    terminal.start(f"cd {ROOT} && PYTHONPATH={TESTS}:{ROOT} {sys.executable} -m workerpool top "
                   f"--redis-url {redis_url} --interval 0.2; echo $? > {exit_file}")

    def busy_rows(screen: str) -> list[str]:
        return [line for line in screen.splitlines()
                if re.search(r"permanent\s+\d+\s+busy\s+\d+\.\d s", line)]

    def two_busy() -> str | None:
        screen = terminal.screen()
        return screen if len(busy_rows(screen)) == 2 else None

    try:
        screen = wait_until(two_busy, 20, what="two busy permanent workers on the screen")
    except AssertionError:
        raise AssertionError("screen:\n" + terminal.screen()) from None
    assert re.search(r"queue watched\s+backlog 5 ", screen), screen
    assert "masters 1  permanent 2  temporary 0  busy 2  max 2" in screen
    assert all(len(line) <= 80 for line in screen.splitlines())
    terminal.tmux("send-keys", "-t", "top", quit_key)
    wait_until(lambda: not terminal.alive(), 10, what=f"top to quit on {quit_key}")
    assert exit_file.read_text().strip() == "0"
