"""TLS: a pool, its producer and the CLI work over `rediss://` (one server),
`rediss+sentinel://` (TLS on the data nodes and on the sentinels) and `rediss+cluster://`, with
mutual TLS and the CA given in the URL; a CA that did not sign the server's certificate, and TLS
options that would be ignored or misread, are refused in one line.

The servers listen on a TLS port only (plain port 0), so nothing can pass in clear text.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from helpers import manifest
from topologies import Certificates, ClusterSet, Node, SentinelSet, tls_redis_server

from workerpool import Queue

from .test_cli import cli

pytestmark = pytest.mark.slow
PASSWORD = "s3cret-tls"
T = TypeVar("T", SentinelSet, ClusterSet)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    missing = ("openssl" if not shutil.which("openssl") else
               "a redis-server built with TLS" if not tls_redis_server() else "")
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing} is missing in CI")
        pytest.skip(f"{missing} is not installed")
    return Certificates.make(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def tls_server(tmp_path: Path, certs: Certificates) -> Iterator[Node]:
    node = Node(tmp_path / "tls", "server", "", tls=certs).start()
    client = node.client()
    client.config_set("requirepass", PASSWORD)  # after start: the start's ping has no password
    client.close()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def tls_sentinels(tmp_path: Path, certs: Certificates) -> Iterator[SentinelSet]:
    yield from _running(SentinelSet(tmp_path / "sentinel", tls=certs))


@pytest.fixture
def tls_cluster(tmp_path: Path, certs: Certificates) -> Iterator[ClusterSet]:
    yield from _running(ClusterSet(tmp_path / "cluster", tls=certs))


def _running(topology: T) -> Iterator[T]:
    try:
        yield topology.start()
    finally:
        topology.stop()


def _url(node: Node, certs: Certificates, ca: Path | None = None) -> str:
    return f"rediss://:{PASSWORD}@127.0.0.1:{node.port}/0?{certs.query(ca)}"


def _serve_and_report(url: str, start_pool, queue: str) -> str:
    """A pool serves tasks enqueued over `url`; returns `workerpool stats` over the same URL."""
    pool = start_pool(manifest(queue, handler="handlers:echo", minWorkers=1, maxWorkers=2), url=url)
    q = Queue(queue, redis_url=url)
    try:
        ids = q.enqueue_many([{"n": i} for i in range(20)])
        assert [q.result(i, timeout=30) for i in ids] == [{"n": i} for i in range(20)], pool.log()
    finally:
        q.close()
    stats = cli("stats", "--queue", queue, url=url)
    assert stats.returncode == 0, stats.stderr
    assert pool.stop() == 0, pool.log()
    return stats.stdout + pool.log()


def test_a_pool_serves_over_tls_with_the_ca_in_the_url(tls_server, certs, start_pool):
    out = _serve_and_report(_url(tls_server, certs), start_pool, "tls")
    assert "processed      20" in out and "master " in out, out
    assert PASSWORD not in out  # the URL's password stays out of stats and the pool's log


def test_a_pool_serves_over_tls_through_tls_sentinels(tls_sentinels, start_pool):
    assert tls_sentinels.url.startswith("rediss+sentinel://")
    out = _serve_and_report(tls_sentinels.url, start_pool, "tls-sentinel")
    assert "processed      20" in out and "master " in out, out


def test_pools_serve_over_tls_on_a_tls_cluster(tls_cluster, start_pool):
    """Two queues on two different primaries: the client follows the slots over TLS too."""
    assert tls_cluster.url.startswith("rediss+cluster://")
    queues = ["tls-a", "tls-b"]
    assert tls_cluster.node_of(queues[0]).port != tls_cluster.node_of(queues[1]).port
    for queue in queues:
        out = _serve_and_report(tls_cluster.url, start_pool, queue)
        assert "processed      20" in out and "master " in out, out


def test_a_wrong_ca_is_refused_in_one_line(tls_server, certs):
    done = cli("stats", "--queue", "tls", url=_url(tls_server, certs, ca=certs.other_ca))
    assert done.returncode == 1, done.stdout
    assert done.stderr.startswith("Error: Redis at rediss://:***@") and done.stderr.count("\n") == 1
    assert "certificate verify failed" in done.stderr and "Traceback" not in done.stderr
    assert PASSWORD not in done.stderr


@pytest.mark.parametrize(("url", "named"), [
    ("redis+sentinel://s1:26379/svc?ssl_ca_certs=/ca.crt", "ssl_ca_certs only with rediss+sentinel://"),
    ("redis+cluster://n1:7000?ssl_certfile=/c.crt", "ssl_certfile only with rediss+cluster://"),
    ("rediss+cluster://n1:7000?sentinel_ssl=false", "sentinel_ssl only with rediss+sentinel://"),
    ("rediss+cluster://n1:7000?ssl_cert_reqs=strict", "ssl_cert_reqs: one of none, optional, required"),
    ("rediss+sentinel://s1:26379/svc?sentinel_ssl=maybe", "sentinel_ssl: true or false, not 'maybe'"),
    ("rediss+cluster://n1:7000?ssl_check_hostname=2&ssl_password=k3y", "ssl_check_hostname: true or false"),
])
def test_tls_options_that_would_be_ignored_or_misread_are_refused(url, named):
    done = cli("stats", "--queue", "q", "--redis-url", url)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert named in done.stderr and "Traceback" not in done.stderr and "k3y" not in done.stderr
