"""One `workerpool run` master process per WorkerPool, started and steered by the operator.

The operator is multi-threaded (kopf, asyncio, a thread pool), so it never forks workers
itself: it starts each master as a fresh process (fork+exec in C via subprocess) and talks to
it with its manifest file and signals. The master's secrets go in its environment, never in
the file or on its command line.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..metrics_server import ENV_VAR as METRICS_ENV
from ..spec import PoolSpec, manifest_of
from ..target import Target
from .metrics import socket_path

KILL_MARGIN_S = 5.0  # past the pool's shutdownGraceSeconds, a master that is still there is killed
LOG_TAIL_LINES = 20  # a master's last log lines kept to explain its exit in a condition


@dataclass
class MasterProcess:
    """A running master and what the operator remembers of it."""

    key: str  # "namespace/name"
    spec: PoolSpec
    target: Target  # its repr hides the URL
    file: Path
    proc: subprocess.Popen[bytes]
    started_at: float
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=LOG_TAIL_LINES))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def exited(self) -> int | None:
        return self.proc.poll()

    def last_error(self) -> str:
        """The last error the master logged (JSON lines), for a Degraded condition."""
        for line in reversed(self.tail):
            try:
                entry = json.loads(line)
            except ValueError:
                if line.strip():
                    return line.strip()[:500]
                continue
            if entry.get("level") in ("ERROR", "CRITICAL"):
                return str(entry.get("event", ""))[:500] + _fields(entry)
        return ""


def _fields(entry: dict[str, Any]) -> str:
    extra = {k: v for k, v in entry.items() if k not in ("time", "role", "pid", "level", "event",
                                                          "traceback")}
    return (": " + ", ".join(f"{k}={v}" for k, v in extra.items()))[:500] if extra else ""


class Masters:
    """The operator's masters, by "namespace/name"."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.running: dict[str, MasterProcess] = {}
        self.lock = threading.Lock()  # guards the dicts
        # one lock per pool around start/reconfigure/stop. In the operator one daemon per pool
        # is the only caller for its key, so this is the registry's own guarantee, not the
        # operator's: locking only the dict once let two callers both pass "stop the previous
        # one" before either registered (two masters, one untracked)
        self._key_locks: dict[str, threading.RLock] = {}
        self.metrics = False  # True: each master serves /metrics on a socket (operator/metrics.py)

    def _key_lock(self, key: str) -> threading.RLock:
        with self.lock:
            return self._key_locks.setdefault(key, threading.RLock())

    def _file(self, key: str) -> Path:
        return self.state_dir / (key.replace("/", "__") + ".yaml")

    def start(self, key: str, spec: PoolSpec, target: Target) -> MasterProcess:
        """Start the master for `key` (stopping any previous one first)."""
        with self._key_lock(key):
            return self._start(key, spec, target)

    def _start(self, key: str, spec: PoolSpec, target: Target) -> MasterProcess:
        self.stop(key)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self._file(key)
        path.write_text(json.dumps(manifest_of(spec)))
        env = {**os.environ, "REDIS_URL": target.redis_url}  # never on the command line
        env.pop(METRICS_ENV, None)  # the operator's own address: masters get a socket each
        metrics = ["--metrics-address", f"unix:{socket_path(self.state_dir, key)}"] if self.metrics else []
        proc = subprocess.Popen(
            [sys.executable, "-m", "workerpool", "run", str(path), "--log-format", "json",
             "--die-with-parent", str(os.getpid()), *metrics],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=os.getcwd(),
            # its own session: a Ctrl+C in the operator's terminal must not reach the master
            # directly (the operator drains it, and a second signal would mean "kill now")
            start_new_session=True)
        master = MasterProcess(key, spec, target, path, proc, time.monotonic())
        threading.Thread(target=_forward, args=(proc.stdout, master.tail), daemon=True,
                         name=f"log {key}").start()
        with self.lock:
            self.running[key] = master
        return master

    def reconfigure(self, key: str, spec: PoolSpec, target: Target) -> MasterProcess:
        """Apply a changed spec: SIGHUP for what a master reloads, a restart otherwise."""
        with self._key_lock(key):
            return self._reconfigure(key, spec, target)

    def _reconfigure(self, key: str, spec: PoolSpec, target: Target) -> MasterProcess:
        master = self.running.get(key)
        if master is None or master.exited() is not None:
            return self._start(key, spec, target)
        if (spec.queue, target) != (master.spec.queue, master.target):
            return self._start(key, spec, target)
        master.file.write_text(json.dumps(manifest_of(spec)))
        master.spec = spec
        master.proc.send_signal(signal.SIGHUP)
        return master

    def stop(self, key: str) -> int | None:
        """Drain and stop the master of `key`; return its exit code (None if none ran)."""
        with self._key_lock(key):
            with self.lock:
                master = self.running.pop(key, None)
            if master is None:
                return None
            return _drain([master])[0]

    def stop_all(self) -> None:
        with self.lock:
            masters = list(self.running.values())
            self.running.clear()
        _drain(masters)


def _drain(masters: list[MasterProcess]) -> list[int]:
    """SIGTERM every master at once, wait for each within its grace, kill the late ones."""
    for m in masters:
        if m.exited() is None:
            m.proc.send_signal(signal.SIGTERM)
    codes = []
    for m in masters:
        try:
            codes.append(m.proc.wait(m.spec.shutdown_grace_s + KILL_MARGIN_S))
        except subprocess.TimeoutExpired:
            m.proc.kill()
            codes.append(m.proc.wait())
        m.file.unlink(missing_ok=True)
    return codes


def _forward(stream: IO[bytes] | None, tail: collections.deque[str]) -> None:
    """Copy a master's log to the operator's stderr (so `kubectl logs` shows it); keep a tail."""
    if stream is None:
        return
    with stream:  # closed at EOF (the master exited), not left to the garbage collector
        for raw in stream:
            line = raw.decode("utf-8", "replace")
            tail.append(line)
            sys.stderr.write(line)
    sys.stderr.flush()
