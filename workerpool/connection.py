"""Where a pool's Redis is — one server, a Sentinel service or a Redis Cluster — as one URL.

One string says it all, so the same value works in `spec.redis.url`, a Secret behind
`spec.redis.urlFrom`, `REDIS_URL` and `--redis-url`, and secrets stay in one place:

    redis://[user:password@]host:6379/0            one server (rediss:// for TLS, unix:// too)
    redis+sentinel://[user:password@]s1:26379,s2:26379/SERVICE[/0][?sentinel_password=…]
    redis+cluster://[user:password@]n1:7000,n2:7001                (rediss+… for TLS)

The Sentinel and Cluster forms use redis-py's own `Sentinel` and `RedisCluster` clients: they
find the primary (or the slot's node) and follow a failover; we write no discovery of our own.
User and password are those of the Redis servers; `sentinel_password` (and `sentinel_username`)
those of the sentinels, when they have their own.

TLS (`rediss…`) takes redis-py's own `ssl_*` query parameters in every form, for instance
`?ssl_ca_certs=/etc/redis-ca.crt` (the CA that signed the servers' certificates) and, for mutual
TLS, `&ssl_certfile=…&ssl_keyfile=…`. `rediss+sentinel://` speaks TLS with the same settings to
the sentinels too, unless `sentinel_ssl=false` (sentinels on a plain port).
"""

from __future__ import annotations

import inspect
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.sentinel import Sentinel

from .errors import SpecError

SCHEMES = ("redis://", "rediss://", "unix://", "redis+sentinel://", "rediss+sentinel://",
           "redis+cluster://", "rediss+cluster://")
ALLOWED = ("a URL starting with redis://, rediss://, unix://, redis+sentinel://, "
           "rediss+sentinel://, redis+cluster:// or rediss+cluster://")
WAIT_TIMEOUT_MS = 100  # default ?wait_timeout_ms: a replica on the same network acks in ~1 ms
_WAIT_MAX = 100_000
_SENTINEL_PORT = 26379
_REDIS_PORT = 6379
# redis-py's TLS keyword arguments a +sentinel / +cluster URL may carry in its query (the plain
# forms hand the whole URL to redis-py, which reads them itself)
SSL_OPTIONS = ("ssl_ca_certs", "ssl_ca_path", "ssl_ca_data", "ssl_certfile", "ssl_keyfile",
               "ssl_password", "ssl_cert_reqs", "ssl_check_hostname")
_CERT_REQS = ("none", "optional", "required")  # ssl_cert_reqs: redis-py's names
_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """A parsed Redis URL; `client()` builds the right redis-py client for it."""

    kind: str  # "server" | "sentinel" | "cluster"
    url: str = field(repr=False)  # may carry a password
    hosts: tuple[tuple[str, int], ...] = ()
    service: str = ""  # Sentinel: the monitored primary's name
    db: int = 0
    tls: bool = False
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    sentinel_auth: dict[str, str] = field(default_factory=dict, repr=False)
    ssl: dict[str, Any] = field(default_factory=dict, repr=False)  # may carry ssl_password
    sentinel_tls: bool = False  # rediss+sentinel: the sentinels speak TLS too
    # ?wait_replicas=N: enqueues and acknowledgements wait (WAIT) until N replicas have them,
    # or ?wait_timeout_ms=T passed; narrows what a failover can lose (README: Production Redis)
    wait_replicas: int = 0
    wait_timeout_ms: int = WAIT_TIMEOUT_MS

    def client(self, **options: Any) -> redis.Redis:
        """A client with `options` (timeouts, ...) for this target.

        For a cluster it is a `RedisCluster`, which speaks the same commands for keys of one
        slot (all of a queue's keys share the queue's slot); it is typed as `redis.Redis` here
        because the code that uses it only calls those commands.
        """
        client = self._client(**options)
        if self.wait_replicas:
            client._wp_replication_wait = (self.wait_replicas, self.wait_timeout_ms)  # type: ignore[attr-defined]
        return client

    def _client(self, **options: Any) -> redis.Redis:
        if self.kind == "server":
            return redis.Redis.from_url(self.url, **options)
        auth: dict[str, Any] = {k: v for k, v in (("username", self.username),
                                                   ("password", self.password)) if v}
        tls: dict[str, Any] = {"ssl": True, **self.ssl} if self.tls else {}
        if self.kind == "sentinel":
            # redis-py's single-connection client reconnects to the address it had (it skips
            # the Sentinel connection's connect(), which asks the sentinels): it would never
            # leave a dead primary. A pooled client asks the sentinels on every reconnect.
            options.pop("single_connection_client", None)
            sentinel_options = {k: v for k, v in options.items()
                                if k in ("socket_timeout", "socket_connect_timeout")}
            sentinel = Sentinel(  # type: ignore[no-untyped-call]
                list(self.hosts), sentinel_kwargs={**sentinel_options, **self.sentinel_auth,
                                                   **(tls if self.sentinel_tls else {})},
                **sentinel_options)
            client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
                self.service, db=self.db, **auth, **tls, **options)
            return client
        options.pop("single_connection_client", None)  # a cluster client holds one per node
        nodes = [ClusterNode(host, port) for host, port in self.hosts]  # type: ignore[no-untyped-call]
        try:
            return RedisCluster(startup_nodes=nodes, **auth, **tls, **options)  # type: ignore[return-value]
        except redis.exceptions.RedisClusterException as e:  # not a RedisError: callers that
            raise redis.ConnectionError(str(e)) from None  # ride out outages would crash on it


def parse_redis_url(where: str, url: Any) -> RedisTarget:
    """Parse and check `url`; SpecError names `where`, the URL (password hidden) and the forms."""
    if not isinstance(url, str) or not url.startswith(SCHEMES):
        raise SpecError(where, redact(url) if isinstance(url, str) else url, ALLOWED)
    scheme, _, rest = url.partition("://")
    url, wait = _take_wait(where, url)
    if "+" not in scheme:
        return RedisTarget("server", url, wait_replicas=wait.get("wait_replicas", 0),
                           wait_timeout_ms=wait.get("wait_timeout_ms", WAIT_TIMEOUT_MS))
    base, kind = scheme.split("+", 1)
    parts = urllib.parse.urlsplit(f"{base}://{rest}")
    credentials, _, hostlist = parts.netloc.rpartition("@")
    username, _, password = credentials.partition(":") if credentials else ("", "", "")
    default_port = _SENTINEL_PORT if kind == "sentinel" else _REDIS_PORT
    hosts = tuple(_host(where, url, h, default_port) for h in hostlist.split(",") if h)
    if not hosts:
        raise SpecError(where, redact(url), f"{kind} URL with at least one host:port")
    path = [p for p in parts.path.split("/") if p]
    query = dict(urllib.parse.parse_qsl(parts.query))
    service, db = "", 0
    if kind == "sentinel":
        if not path:
            raise SpecError(where, redact(url),
                            "redis+sentinel://HOST:PORT,.../SERVICE[/DB]: the service name")
        service, path = path[0], path[1:]
    if path:
        if not path[0].isdigit() or len(path) > 1 or (kind == "cluster" and path[0] != "0"):
            raise SpecError(where, redact(url), "a database number after the hosts (Redis Cluster: only 0)")
        db = int(path[0])
    sentinel_auth = {k.removeprefix("sentinel_"): v for k, v in query.items()
                     if k in ("sentinel_username", "sentinel_password")}
    if kind == "cluster" and wait.get("wait_replicas"):
        raise SpecError(where, redact(url), "no wait_replicas with Redis Cluster (not supported yet)")
    ssl, sentinel_tls = _ssl_options(where, url, base == "rediss", kind, query)
    return RedisTarget(kind, url, hosts, service, db, base == "rediss",
                       urllib.parse.unquote(username) or None, urllib.parse.unquote(password) or None,
                       sentinel_auth, ssl, sentinel_tls, wait.get("wait_replicas", 0),
                       wait.get("wait_timeout_ms", WAIT_TIMEOUT_MS))


def _ssl_options(where: str, url: str, tls: bool, kind: str,
                 query: dict[str, str]) -> tuple[dict[str, Any], bool]:
    """redis-py's ssl_* arguments from the query, and whether the sentinels speak TLS."""
    ssl: dict[str, Any] = {k: v for k, v in query.items() if k in SSL_OPTIONS}
    given = [k for k in query if k in SSL_OPTIONS or k == "sentinel_ssl"]
    if "sentinel_ssl" in query and kind != "sentinel":
        raise SpecError(where, redact(url), "sentinel_ssl only with rediss+sentinel://")
    if given and not tls:  # redis-py would ignore them: a user would believe TLS is on
        raise SpecError(where, redact(url), f"{given[0]} only with rediss+{kind}:// (TLS)")
    if ssl.get("ssl_cert_reqs", "none") not in _CERT_REQS:
        raise SpecError(where, redact(url), f"ssl_cert_reqs: one of {', '.join(_CERT_REQS)}")
    flags = {k: query[k].lower() for k in ("ssl_check_hostname", "sentinel_ssl") if k in query}
    for k, v in flags.items():
        if v not in _TRUE + _FALSE:
            raise SpecError(where, redact(url), f"{k}: true or false, not {v!r}")
    if "ssl_check_hostname" in flags:
        ssl["ssl_check_hostname"] = flags["ssl_check_hostname"] in _TRUE
    return ssl, tls and kind == "sentinel" and flags.get("sentinel_ssl", "true") in _TRUE


def _take_wait(where: str, url: str) -> tuple[str, dict[str, int]]:
    """The URL without ?wait_replicas / ?wait_timeout_ms (redis-py would refuse them), and them."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    wait = {k: v for k, v in query if k in ("wait_replicas", "wait_timeout_ms")}
    if not wait:
        return url, {}
    for k, v in wait.items():
        if not v.isdigit() or not 0 <= int(v) <= _WAIT_MAX:
            raise SpecError(where, redact(url), f"{k}: a whole number from 0 to {_WAIT_MAX}")
    rest = urllib.parse.urlencode([(k, v) for k, v in query if k not in wait])
    return urllib.parse.urlunsplit(parts._replace(query=rest)), {k: int(v) for k, v in wait.items()}


def replication_wait(client: Any) -> tuple[int, int]:
    """(replicas, timeout ms) that writes through `client` wait for; (0, 0): none."""
    wait: tuple[int, int] = getattr(client, "_wp_replication_wait", (0, 0))
    return wait


def _host(where: str, url: str, text: str, default_port: int) -> tuple[str, int]:
    host, _, port = text.rpartition(":") if ":" in text else (text, "", str(default_port))
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SpecError(where, redact(url), f"hosts as HOST:PORT with a port from 1 to 65535, not {text!r}")
    return host, int(port)


def redact(url: str) -> str:
    """The URL with every password replaced by '***', safe for logs, errors and status."""
    url = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
    return re.sub(r"([?&][a-z_]*password=)[^&]*", r"\1***", url)


_cluster_clients: dict[str, redis.Redis] = {}


# redis-py >= 7 spells "send no CLIENT SETINFO" driver_info=None; older ones lib_name=None
_NO_CLIENT_SETINFO: dict[str, None] = (
    {"driver_info": None} if "driver_info" in inspect.signature(redis.Redis.__init__).parameters
    else {"lib_name": None, "lib_version": None})


def connect(url: str, **options: Any) -> redis.Redis:
    """A client for `url` (one server, Sentinel or Cluster: see connection.py) with timeouts
    that suit a long-running process. SpecError if the URL is not one of those forms."""
    options.setdefault("socket_connect_timeout", 5)
    options.setdefault("health_check_interval", 0)
    # no CLIENT SETINFO on connect: it reads package metadata from disk each time, which in
    # a forked worker costs two round trips and ~1 MB of copied pages
    for key, value in _NO_CLIENT_SETINFO.items():
        options.setdefault(key, value)
    return parse_redis_url("redis url", url).client(**options)


def preconnected(url: str, socket_timeout: float) -> redis.Redis:
    """A client for a worker with one connection, opened now (in the master, before the fork).

    The child inherits a connected socket, so its first command costs one round trip
    instead of a connection setup whose code path dirties ~1 MiB of pages shared with the
    master. If Redis is unreachable now, the client connects lazily later. After the fork the
    master gives the socket up with release_in_parent().
    """
    if parse_redis_url("redis url", url).kind == "cluster":
        # One Cluster client, made in the master and inherited by every fork (its per-node
        # pools see the new pid and connect afresh in the child): a new one needs a node to
        # answer right now, so a worker forked during a cluster outage would fail the master.
        if url not in _cluster_clients:
            _cluster_clients[url] = connect(url, socket_timeout=socket_timeout)
        return _cluster_clients[url]
    try:
        return connect(url, socket_timeout=socket_timeout, single_connection_client=True)
    except redis.RedisError:  # unreachable (connect() raises only RedisErrors): connect later
        return connect(url, socket_timeout=socket_timeout)


def release_in_parent(client: redis.Redis, child_pid: int) -> None:
    """In the parent, after forking `child_pid`: close our copy of the child's connection.

    The child keeps using the socket it inherited; the parent must close its own descriptor
    for it, but must not shutdown(2) the socket, which would cut the child's connection too.
    This relies on redis-py's `AbstractConnection.disconnect()` (redis-py 5.0 and later, the
    range pyproject allows; tested with the installed version by
    tests/integration/test_handover.py): it calls shutdown(2) only when the connection's `pid`
    attribute is the calling process's pid, and then closes the descriptor. So we mark the
    connection as the child's and disconnect it.

    Only a single-connection client (preconnected()'s usual kind) holds such a socket. A pooled
    client (Sentinel, Redis unreachable at preconnect) or a Cluster client (no `.connection`)
    hands the child nothing: their pools see the new pid in the child and connect afresh, and
    the Cluster client is shared by every fork, so it stays open here.
    """
    connection = getattr(client, "connection", None)
    if connection is None:
        return
    connection.pid = child_pid
    connection.disconnect()
