"""The operator's one /metrics: every pool's master, merged, plus the operator's own numbers.

Each master serves its metrics on a Unix socket in the state directory (no port to pick, and
nothing listens outside the pod but the operator). At scrape time the operator reads each
socket, adds a `namespace` label (two namespaces may hold pools of the same name), and serves
the merged families with prometheus-client's own HTTP server: the operator never forks, so a
thread is fine here, unlike in a master.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Protocol
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from ..errors import SpecError
from ..metrics_server import parse_address

SCRAPE_TIMEOUT_S = 2.0  # per master; a master that does not answer is skipped and counted


class MasterLike(Protocol):
    @property
    def key(self) -> str: ...  # "namespace/name"


def socket_path(state_dir: Path, key: str) -> Path:
    """Where the master of `key` serves its metrics (short: a Unix socket path has 108 bytes)."""
    return state_dir / f"m-{hashlib.sha1(key.encode()).hexdigest()[:12]}.sock"


def read_unix(path: Path, timeout: float = SCRAPE_TIMEOUT_S) -> str:
    """GET /metrics over a Unix socket; the master closes the connection after its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: master\r\nConnection: close\r\n\r\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise OSError(f"master answered {head.splitlines()[0]!r}" if head else "empty answer")
    return body.decode()


class OperatorCollector(Collector):
    """Merges the masters' metrics at scrape time; counts the masters it could not read."""

    def __init__(self, state_dir: Path, running: Mapping[str, MasterLike]) -> None:
        self.state_dir = state_dir
        self.running = running
        self.failures = 0
        self.process = ProcessCollector(registry=None)  # the operator's own CPU and memory

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for key in sorted(self.running):
            try:
                text = read_unix(socket_path(self.state_dir, key))
            except OSError:
                self.failures += 1  # starting, stopping or stuck: its series are absent this time
                continue
            namespace, _, name = key.partition("/")
            for family in text_string_to_metric_families(text):
                into = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type))
                extra = {"namespace": namespace}
                if "pool" not in {label for s in family.samples for label in s.labels}:
                    extra["pool"] = name  # the master's own process_* and build info
                into.samples.extend(s._replace(labels={**s.labels, **extra}) for s in family.samples)
        for family in self.process.collect():  # same names as the masters' process_*: one family
            into = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type))
            into.samples.extend(family.samples)
        yield from merged.values()
        masters = GaugeMetricFamily("workerpool_operator_masters", "Masters the operator runs.")
        masters.add_metric([], len(self.running))
        yield masters
        failed = CounterMetricFamily("workerpool_operator_scrape_errors",
                                     "Masters whose metrics could not be read during a scrape.")
        failed.add_metric([], self.failures)
        yield failed


def serve(address: str, state_dir: Path, running: Mapping[str, MasterLike]) -> WSGIServer:
    """Serve the merged metrics on `address` ([HOST:]PORT) from a daemon thread; the server."""
    host, port = parse_address("--metrics-address", address)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(OperatorCollector(state_dir, running))
    try:
        server, _ = start_http_server(port, addr=host or "0.0.0.0", registry=registry)
    except OSError as e:
        raise SpecError("--metrics-address", address, f"cannot listen there ({e.strerror})") from None
    return server
