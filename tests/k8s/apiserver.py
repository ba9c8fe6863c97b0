"""A real kube-apiserver backed by a real etcd, on loopback, for tests.

Plain Python (no pytest): ``ApiServer(find_binaries()).start()`` or use it as a
context manager.  Binaries come from ``.ci/build-k8s.sh``; see HARNESS.md.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

K8S_VERSION = os.environ.get("WORKERPOOL_K8S_VERSION", "v1.36.3")
ADMIN_USER = "workerpool-admin"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
T = TypeVar("T")


@dataclass(frozen=True)
class Binaries:
    """Paths of the three programs the harness runs."""

    etcd: Path
    kube_apiserver: Path
    kubectl: Path


def bin_dir() -> Path:
    """Directory holding the binaries: $WORKERPOOL_K8S_BIN or the build cache."""
    explicit = os.environ.get("WORKERPOOL_K8S_BIN")
    if explicit:
        return Path(explicit)
    default_root = Path.home() / ".cache" / "workerpool-k8s"
    root = Path(os.environ.get("WORKERPOOL_K8S_CACHE", default_root))
    return root / K8S_VERSION / "bin"


def find_binaries() -> Binaries | None:
    """Return the binaries if all three are present and executable, else None."""
    d = bin_dir()
    bins = Binaries(d / "etcd", d / "kube-apiserver", d / "kubectl")
    if all(os.access(p, os.X_OK) for p in (bins.etcd, bins.kube_apiserver, bins.kubectl)):
        return bins
    return None


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that are free right now."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.1) -> T:
    """Poll ``probe`` until it returns a non-None value; raise after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)  # poll interval of a deadline-bound condition wait


def _die_with_parent() -> None:
    """preexec_fn: have Linux SIGKILL the child if the test process dies."""
    with contextlib.suppress(OSError):  # not glibc Linux: rely on stop() alone
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL and reap."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


def _openssl(args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args.split()], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path) -> None:
    """Write ca.crt, server.crt/.key (SAN 127.0.0.1, localhost) and sa.key into ``d``."""
    ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    _openssl(f"req -x509 {ec} -keyout ca.key -out ca.crt -days 7 -subj /CN=test-ca", d)
    _openssl(f"req {ec} -keyout server.key -out server.csr -subj /CN=kube-apiserver", d)
    (d / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "extendedKeyUsage=serverAuth\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
    )
    _openssl(
        "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial"
        " -out server.crt -days 7 -extfile server.ext",
        d,
    )
    _openssl("genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key", d)


def kubeconfig_yaml(
    server: str, ca_file: Path, user: str, token: str, namespace: str = "default"
) -> str:
    """A one-context kubeconfig (JSON is valid YAML) using a bearer token."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "test", "cluster": {"server": server, "certificate-authority": str(ca_file)}}
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {"name": "test", "context": {"cluster": "test", "user": user, "namespace": namespace}}
        ],
        "current-context": "test",
    }
    return json.dumps(config, indent=2)


class ApiServer:
    """etcd + kube-apiserver on random loopback ports, in a temp dir.

    Attributes once started: ``url``, ``ca_file``, ``admin_token``,
    ``admin_kubeconfig`` and ``workdir`` (logs: ``etcd.log``, ``kube-apiserver.log``).
    """

    def __init__(self, binaries: Binaries, startup_timeout: float = 120.0) -> None:
        self.binaries = binaries
        self.startup_timeout = startup_timeout
        self.workdir = Path(tempfile.mkdtemp(prefix="workerpool-k8s-"))
        self.ca_file = self.workdir / "pki" / "ca.crt"
        self.admin_token = secrets.token_hex(24)
        self.admin_kubeconfig = self.workdir / "admin.kubeconfig"
        self.url = ""
        self._procs: list[subprocess.Popen] = []

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> ApiServer:
        """Start etcd, then kube-apiserver; return once /readyz says ok."""
        try:
            (self.workdir / "pki").mkdir()
            make_pki(self.workdir / "pki")
            etcd_url = self._start_etcd()
            self._start_apiserver(etcd_url)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        with open(self.workdir / f"{name}.log", "wb") as log:  # the child keeps its copy
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
        self._procs.append(proc)
        return proc

    def log_tail(self, name: str, lines: int = 30) -> str:
        """Last ``lines`` lines of a process log (``etcd`` or ``kube-apiserver``)."""
        path = self.workdir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def _wait_healthy(
        self, name: str, proc: subprocess.Popen, probe: Callable[[], bool | None]
    ) -> None:
        def check() -> bool | None:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n" + self.log_tail(name))
            return probe()

        try:
            wait_for(f"{name} to become ready", check, self.startup_timeout)
        except TimeoutError as e:
            raise TimeoutError(f"{e}\n{self.log_tail(name)}") from None

    def _start_etcd(self) -> str:
        client, peer = free_ports(2)
        client_url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        proc = self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=test",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=test={peer_url}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self._wait_healthy("etcd", proc, lambda: _http_ok(f"{client_url}/health"))
        return client_url

    def _apiserver_args(self, etcd_url: str, port: int) -> list[str]:
        pki = self.workdir / "pki"
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(f'{self.admin_token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
        return [
            str(self.binaries.kube_apiserver),
            f"--etcd-servers={etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--tls-cert-file={pki / 'server.crt'}",
            f"--tls-private-key-file={pki / 'server.key'}",
            "--authorization-mode=RBAC",
            f"--token-auth-file={tokens}",
            f"--service-account-issuer={SA_ISSUER}",
            f"--service-account-key-file={pki / 'sa.key'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-cluster-ip-range=10.0.0.0/24",
            # Like real clusters; else privileged Pods fail validation before
            # PodSecurity admission gets to see them.
            "--allow-privileged=true",
            # No controller-manager creates the "default" ServiceAccount, so the
            # ServiceAccount admission plugin would refuse every Pod.
            "--disable-admission-plugins=ServiceAccount",
            # The "kubernetes" Service's Endpoints may not point at loopback.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
        ]

    def _start_apiserver(self, etcd_url: str) -> None:
        (port,) = free_ports(1)
        self.url = f"https://127.0.0.1:{port}"
        proc = self._spawn("kube-apiserver", self._apiserver_args(etcd_url, port))
        context = ssl.create_default_context(cafile=str(self.ca_file))
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        self._wait_healthy(
            "kube-apiserver",
            proc,
            lambda: _http_ok(f"{self.url}/readyz", context=context, headers=headers),
        )
        self.admin_kubeconfig.write_text(
            kubeconfig_yaml(self.url, self.ca_file, ADMIN_USER, self.admin_token)
        )

    def stop(self) -> None:
        """Stop kube-apiserver then etcd (TERM, deadline, KILL); remove the temp dir."""
        for proc in reversed(self._procs):
            stop_process(proc)
        self._procs.clear()
        if os.environ.get("WORKERPOOL_K8S_KEEP_WORKDIR") != "1":
            shutil.rmtree(self.workdir, ignore_errors=True)

    def kubeconfig_for_token(
        self,
        token: str,
        user: str = "token-user",
        namespace: str = "default",
        path: Path | None = None,
    ) -> Path:
        """Write a kubeconfig that authenticates with ``token``; return its path."""
        if path is None:
            path = self.workdir / f"{user}-{secrets.token_hex(4)}.kubeconfig"
        path.write_text(kubeconfig_yaml(self.url, self.ca_file, user, token, namespace))
        return path

    def service_account_token(
        self, namespace: str, name: str, duration: str = "1h", audience: str = ""
    ) -> str:
        """A bound token for ServiceAccount ``namespace/name`` via the TokenRequest API."""
        args = ["create", "token", name, "-n", namespace, f"--duration={duration}"]
        if audience:
            args.append(f"--audience={audience}")
        return self.kubectl(*args).stdout.strip()

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess:
        """Run kubectl (admin unless ``kubeconfig`` is given); text output captured."""
        config = kubeconfig or self.admin_kubeconfig
        argv = [str(self.binaries.kubectl), f"--kubeconfig={config}", *args]
        result = subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=None if input else subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(
                result.returncode, argv, result.stdout, result.stderr
            )
        return result

    def create_namespace(self, prefix: str = "t", labels: dict | None = None) -> str:
        """Create a uniquely named namespace (with ``labels``) and return its name."""
        name = f"{prefix}-{secrets.token_hex(4)}"
        manifest = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": labels or {}},
        }
        self.kubectl("create", "-f", "-", input=json.dumps(manifest))
        return name


def _http_ok(
    url: str, context: ssl.SSLContext | None = None, headers: dict | None = None
) -> bool | None:
    """True if GET ``url`` answers 200, None otherwise (not yet up, not ready)."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return True if response.status == 200 else None
    except (urllib.error.URLError, ConnectionError, TimeoutError, ssl.SSLError):
        return None
