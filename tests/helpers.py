"""Test helpers: wait on conditions with deadlines, run real pools as subprocesses."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest.mock import ANY as ANY  # re-exported: {"traceback": ANY} matches any value

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


LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
Pattern = str | Mapping[str, Any]  # an event name, or {field: wanted value or predicate}


def at_least(level: str) -> Callable[[Any], bool]:
    """A field predicate for `level=`: that level or a more severe one."""
    floor = LEVELS.index(level)
    return lambda value: value in LEVELS and LEVELS.index(value) >= floor


def containing(text: str) -> Callable[[Any], bool]:
    """A field predicate: a string with `text` in it (an error message, a recycle reason)."""
    return lambda value: isinstance(value, str) and text in value


def matches(event: Mapping[str, Any], pattern: Pattern) -> bool:
    """Whether an event has every field of `pattern`, each equal to the value given or, for a
    callable, accepted by it."""
    wanted = {"event": pattern} if isinstance(pattern, str) else pattern
    for key, want in wanted.items():
        if key not in event:
            return False
        if not (want(event[key]) if callable(want) else event[key] == want):
            return False
    return True


class EventLog:
    """A log file written with `--log-format json`, read as events (one dict per line).

    Lines that are not JSON objects with an "event" (a traceback Python printed, a stray
    print) are kept apart in `stray_lines()`: `assert_logs` fails on them unless told not to.
    The file is read incrementally, so polling a long log stays cheap.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""  # the tail of a line still being written
        self._events: list[dict[str, Any]] = []
        self._stray: list[str] = []

    def _read(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return
        self._offset += len(chunk)
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for raw in lines:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict) and "event" in parsed:
                self._events.append(parsed)
            elif raw.strip():
                self._stray.append(raw.decode("utf-8", "replace"))

    def events(self, event: Any = None, **fields: Any) -> list[dict[str, Any]]:
        """The events so far with this name (if given) and these fields (values or predicates)."""
        self._read()
        pattern = fields if event is None else {"event": event, **fields}
        return [e for e in self._events if matches(e, pattern)]

    def stray_lines(self) -> list[str]:
        """Complete lines that are not JSON events."""
        self._read()
        return list(self._stray)

    def wait_for_event(self, event: Any = None, *, count: int = 1, timeout: float = 10.0,
                       **fields: Any) -> list[dict[str, Any]]:
        """Wait until `count` events match (as `events()`); return all that match by then."""
        def enough() -> list[dict[str, Any]] | None:
            found = self.events(event, **fields)
            return found if len(found) >= count else None

        with self.tail_on_timeout():
            found: list[dict[str, Any]] = wait_until(enough, timeout,
                                                     what=f"{count} event(s) {event!r} {fields}")
        return found

    def assert_logs(self, expected: Iterable[Pattern] = (), prohibited: Iterable[Pattern] = (),
                    *, allow_stray: bool = False) -> None:
        """Every expected pattern matched by some event, no event matching a prohibited one, and
        (unless allowed) no stray line: kopf's `assert_logs`, on parsed events."""
        events = self.events()
        prohibited = list(prohibited)
        missing = [p for p in expected if not any(matches(e, p) for e in events)]
        found = [e for e in events if any(matches(e, p) for p in prohibited)]
        stray = [] if allow_stray else self.stray_lines()
        assert not (missing or found or stray), (
            f"missing: {missing}\nprohibited but found: {found}\nstray lines: {stray[:20]}")

    @contextmanager
    def tail_on_timeout(self, chars: int = 3000) -> Iterator[None]:
        """A wait that fails shows the log's end as it was then (not as it was when it began)."""
        try:
            yield
        except AssertionError as e:
            tail = self.path.read_text(errors="replace")[-chars:] if self.path.exists() else ""
            raise AssertionError(f"{e}; the log's end:\n{tail}") from None


class RunningPool(EventLog):
    """`workerpool run` in a subprocess, its log (JSON unless `extra` says --log-format) in a
    file: `events()`, `wait_for_event()`, `assert_logs()` read it."""

    def __init__(self, tmp: Path, redis_url: str, doc: dict[str, Any], *extra: str) -> None:
        self.tmp = tmp
        self.redis_url = redis_url
        self.file = tmp / f"{doc['metadata']['name']}.yaml"
        self.log_path = tmp / f"{doc['metadata']['name']}.log"
        super().__init__(self.log_path)
        self.write(doc)
        env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{ROOT}", "REDIS_URL": redis_url}
        given = "--log-format" in extra
        self.log_format = extra[extra.index("--log-format") + 1] if given else "json"
        fmt = [] if given else ["--log-format", "json"]
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "workerpool", "run", str(self.file), *extra, *fmt],
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
        with self.tail_on_timeout():
            wait_until(lambda: (self.count("permanent"), self.count("temporary")) == (permanent, temporary),
                       timeout, what=f"{permanent} permanent + {temporary} temporary workers")

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
