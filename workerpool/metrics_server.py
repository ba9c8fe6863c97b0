"""/metrics over HTTP from the master's own loop: non-blocking sockets, no thread.

The master forks workers, and forking a process that runs an HTTP thread can copy a lock that
thread held into the child (CPython warns on fork with threads). So the listening socket joins
the master's select(); a scrape is read and answered between two ticks. A client that does
not send its request within CLIENT_DEADLINE_S is dropped; the master never waits on one.
"""

from __future__ import annotations

import contextlib
import os
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
_ALLOWED = "PORT, :PORT (all interfaces), HOST:PORT with PORT from 0 to 65535, or unix:PATH"


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


def _listen(where: str, address: str) -> socket.socket:
    """A listening socket for a TCP address or `unix:PATH` (the operator's masters use these)."""
    try:
        if address.startswith("unix:"):
            path = address[len("unix:"):]
            if not path:
                raise SpecError(where, address, _ALLOWED)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # left by a master that was killed
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(path)
            listener.listen(64)
            return listener
        host, port = parse_address(where, address)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return socket.create_server((host, port), family=family, backlog=64,
                                    dualstack_ipv6=family == socket.AF_INET6 and not host)
    except OSError as e:
        raise SpecError(where, address, f"cannot listen there ({e.strerror})") from None


def _shown(listener: socket.socket) -> str:
    name = listener.getsockname()
    if isinstance(name, str):
        return "unix:" + name
    return f"{name[0] or '*'}:{name[1]}"


class MetricsServer:
    """Listens on `address`; the master selects on fds() and calls serve() with the ready ones."""

    def __init__(self, address: str, registry: CollectorRegistry, where: str = "--metrics-address") -> None:
        self.registry = registry
        self.listener = _listen(where, address)
        self.listener.setblocking(False)
        self.clients: dict[int, _Client] = {}
        logs.event("serving metrics", address=_shown(self.listener), path="/metrics")

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
        """Close every socket (in a freshly forked worker: the master keeps serving)."""
        for client in list(self.clients.values()):
            self._close(client)
        self.listener.close()

    def shutdown(self) -> None:
        """The master is exiting: close, and remove a Unix socket's file."""
        name = self.listener.getsockname()
        self.close()
        if isinstance(name, str) and name:
            with contextlib.suppress(OSError):
                os.unlink(name)
