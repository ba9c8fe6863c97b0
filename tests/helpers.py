"""Test helpers: wait on conditions with deadlines, run real pools as subprocesses."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import redis
import yaml

from workerpool.embedded import find_redis_server

TESTS = Path(__file__).parent
ROOT = TESTS.parent


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02,
               what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def manifest(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "workerpool.dev/v1alpha1", "kind": "WorkerPool",
            "metadata": {"name": name}, "spec": spec}


class RunningPool:
    """`workerpool run` in a subprocess, with its log in a file."""

    def __init__(self, tmp: Path, redis_url: str, doc: dict[str, Any], *extra: str) -> None:
        self.tmp = tmp
        self.redis_url = redis_url
        self.file = tmp / f"{doc['metadata']['name']}.yaml"
        self.log_path = tmp / f"{doc['metadata']['name']}.log"
        self.write(doc)
        env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{ROOT}", "REDIS_URL": redis_url}
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "workerpool", "run", str(self.file), *extra],
            stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
        self.ps = psutil.Process(self.proc.pid)

    def write(self, doc: dict[str, Any]) -> None:
        self.file.write_text(yaml.safe_dump(doc))

    def log(self) -> str:
        return self.log_path.read_text()

    def workers(self, role: str | None = None) -> list[psutil.Process]:
        """Live worker processes (by process title), optionally of one role."""
        out = []
        for child in self.ps.children():
            try:
                title = " ".join(child.cmdline())
                if child.status() == psutil.STATUS_ZOMBIE:
                    continue
            except psutil.NoSuchProcess:
                continue
            if "worker[" in title and (role is None or f"worker[{role}]" in title):
                out.append(child)
        return out

    def count(self, role: str | None = None) -> int:
        return len(self.workers(role))

    def wait_workers(self, permanent: int, temporary: int, timeout: float = 10.0) -> None:
        wait_until(lambda: (self.count("permanent"), self.count("temporary")) == (permanent, temporary),
                   timeout, what=f"{permanent} permanent + {temporary} temporary workers; log:\n"
                   + self.log()[-3000:])

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int:
        """Send one SIGTERM (unless it already exited) and wait for the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        """Last resort for a failed test: kill the master and everything it started."""
        if self.proc.poll() is not None:
            self._log.close()
            return
        for p in self.ps.children(recursive=True):
            p.kill()
        self.proc.kill()
        self.proc.wait()
        self._log.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A private redis-server on a loopback port; can be stopped and started again."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.data_dir = data_dir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        binary = find_redis_server()
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.data_dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        try:
            wait_until(lambda: _pings(client), 10, what="redis-server to answer")
        finally:
            client.close()  # left open, its socket surfaced as a ResourceWarning whenever gc ran
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False




def parse_table(text: str) -> list[dict[str, str]]:
    """`kubectl get` output as rows of {COLUMN: value}; an empty cell is '' (columns are
    sliced at the header's offsets, since kubectl leaves a missing value blank)."""
    header, *rows = text.splitlines()
    starts = [i for i, ch in enumerate(header) if ch != " " and (i == 0 or header[i - 1] == " ")]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    names = [header[a:b].strip() for a, b in bounds]
    return [{n: row[a:b].strip() for n, (a, b) in zip(names, bounds, strict=True)} for row in rows]
