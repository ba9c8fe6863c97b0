"""/metrics over HTTP from the master's own loop: non-blocking sockets, no thread.

The master forks workers, and forking a process that runs an HTTP thread can copy a lock that
thread held into the child (CPython warns on fork with threads). So the listening socket joins
the master's select(); a scrape is read and answered between two ticks. A client that does
not send its request within CLIENT_DEADLINE_S is dropped; the master never waits on one.
"""

from __future__ import annotations

import re
import socket
import time

from prometheus_client import CollectorRegistry, generate_latest

from . import logs
from .errors import SpecError

ENV_VAR = "WORKERPOOL_METRICS_ADDRESS"
CLIENT_DEADLINE_S = 5.0  # to send the request line and headers
SEND_TIMEOUT_S = 1.0  # to take the response (a few KiB; fits the socket buffer)
MAX_REQUEST_BYTES = 8192
_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # what every Prometheus 2.x parses
_ADDRESS = re.compile(r"^(?:(?P<host>\[[0-9a-fA-F:.]+\]|[^:\[\]]*):)?(?P<port>\d{1,5})$")
_ALLOWED = "PORT, :PORT (all interfaces) or HOST:PORT, with PORT from 0 to 65535"


def parse_address(where: str, address: str) -> tuple[str, int]:
    """'9464' / ':9464' -> ('', 9464); '127.0.0.1:9464'; '[::1]:9464'. `where` names the setting."""
    found = _ADDRESS.match(address.strip())
    if not found or int(found.group("port")) > 65535:
        raise SpecError(where, address, _ALLOWED)
    host = (found.group("host") or "").strip("[]")
    return host, int(found.group("port"))


class _Client:
    __slots__ = ("buffer", "deadline", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.deadline = time.monotonic() + CLIENT_DEADLINE_S


class MetricsServer:
    """Listens on `address`; the master selects on fds() and calls serve() with the ready ones."""

    def __init__(self, address: str, registry: CollectorRegistry, where: str = "--metrics-address") -> None:
        host, port = parse_address(where, address)
        self.registry = registry
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            self.listener = socket.create_server((host, port), family=family, backlog=64,
                                                 dualstack_ipv6=family == socket.AF_INET6 and not host)
        except OSError as e:
            raise SpecError(where, address, f"cannot listen there ({e.strerror})") from None
        self.listener.setblocking(False)
        self.clients: dict[int, _Client] = {}
        self.port = int(self.listener.getsockname()[1])
        logs.event("serving metrics", address=f"{host or '*'}:{self.port}", path="/metrics")

    def fds(self) -> list[int]:
        return [self.listener.fileno(), *self.clients]

    def serve(self, ready: list[int]) -> None:
        """Accept new scrapes, answer complete requests, drop clients past their deadline."""
        for fd in ready:
            if fd == self.listener.fileno():
                self._accept()
            elif fd in self.clients:
                self._read(self.clients[fd])
        now = time.monotonic()
        for client in [c for c in self.clients.values() if now > c.deadline]:
            self._close(client)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # the client gave up before we accepted it (ECONNABORTED)
                continue
            sock.setblocking(False)
            self.clients[sock.fileno()] = _Client(sock)

    def _read(self, client: _Client) -> None:
        try:
            data = client.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        client.buffer += data
        if not data or len(client.buffer) > MAX_REQUEST_BYTES:
            self._close(client)
        elif b"\r\n\r\n" in client.buffer:
            self._respond(client)

    def _respond(self, client: _Client) -> None:
        method, _, rest = client.buffer.partition(b" ")
        path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            status, body, ctype = "405 Method Not Allowed", b"GET /metrics\n", "text/plain"
        elif path == b"/metrics":
            status, body, ctype = "200 OK", generate_latest(self.registry), _CONTENT_TYPE
        else:
            status, body, ctype = "404 Not Found", b"metrics are at /metrics\n", "text/plain"
        head = (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n").encode()
        try:
            client.sock.settimeout(SEND_TIMEOUT_S)
            client.sock.sendall(head if method == b"HEAD" else head + body)
        except OSError:
            pass  # the scraper went away; it retries on its next interval
        self._close(client)

    def _close(self, client: _Client) -> None:
        self.clients.pop(client.sock.fileno(), None)
        client.sock.close()

    def close(self) -> None:
        """Close every socket (in the master at exit, and in a freshly forked worker)."""
        for client in list(self.clients.values()):
            self._close(client)
        self.listener.close()
