"""Smoke tests proving the harness runs a real, enforcing kube-apiserver."""

from __future__ import annotations

import json
import os
import queue
import shlex
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from apiserver import ApiServer, stop_process, wait_for
from kubernetes import client, config
from kubernetes.client.rest import ApiException

GROUP, VERSION, PLURAL = "harness.workerpool.test", "v1", "ranges"

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "range", "kind": "Range"},
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["min", "max"],
                                "properties": {
                                    "min": {"type": "integer"},
                                    "max": {"type": "integer"},
                                },
                                "x-kubernetes-validations": [
                                    {
                                        "rule": "self.min <= self.max",
                                        "message": "min must not exceed max",
                                    }
                                ],
                            },
                            "status": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                        },
                    }
                },
            }
        ],
    },
}


def api_client(kubeconfig: Path) -> client.ApiClient:
    """A kubernetes.client ApiClient for a kubeconfig file."""
    return config.new_client_from_config(config_file=str(kubeconfig))


@pytest.fixture(scope="module")
def admin(apiserver: ApiServer) -> Iterator[client.ApiClient]:
    """An admin (system:masters) API client for this module."""
    with api_client(apiserver.admin_kubeconfig) as api:
        yield api


def status_message(error: ApiException) -> str:
    """The ``message`` of the Status object the API server answered with."""
    return str(json.loads(error.body)["message"])


def crd_established(ext: client.ApiextensionsV1Api, name: str) -> bool | None:
    """True once the CRD has condition Established=True, else None (keep waiting)."""
    crd = ext.read_custom_resource_definition(name)
    conditions = crd.status.conditions or []
    return True if any(c.type == "Established" and c.status == "True" for c in conditions) else None


def test_version_is_real(apiserver: ApiServer) -> None:
    """The server is the release we built, and kubectl matches it."""
    out = json.loads(apiserver.kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["gitVersion"].startswith("v1.")
    assert out["clientVersion"]["gitVersion"] == out["serverVersion"]["gitVersion"]


def test_crd_cel_validation_and_status(admin: client.ApiClient, namespace: str) -> None:
    """CRD with a CEL rule: a valid CR is stored, an invalid one refused; /status works."""
    ext = client.ApiextensionsV1Api(admin)
    ext.create_custom_resource_definition(CRD)
    wait_for("CRD Established", lambda: crd_established(ext, CRD["metadata"]["name"]), 30)
    objs = client.CustomObjectsApi(admin)

    def rng(name: str, lo: int, hi: int) -> dict:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Range",
            "metadata": {"name": name},
            "spec": {"min": lo, "max": hi},
        }

    objs.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, rng("ok", 1, 2))
    with pytest.raises(ApiException) as refused:
        objs.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, rng("bad", 3, 2))
    assert refused.value.status == 422
    assert "min must not exceed max" in status_message(refused.value)

    patched = objs.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "ok", {"status": {"phase": "Seen"}}
    )
    assert patched["status"] == {"phase": "Seen"}


def sh(apiserver: ApiServer, command: str, kubeconfig: Path | None = None) -> str:
    """Run one ``kubectl`` command line (shell-split, admin by default); return stdout."""
    return apiserver.kubectl(*shlex.split(command), kubeconfig=kubeconfig).stdout


def test_rbac_is_enforced_for_service_account_tokens(apiserver: ApiServer, namespace: str) -> None:
    """A TokenRequest token for a get-only Role can get, but neither list nor create."""
    ns = f"-n {namespace}"
    sh(apiserver, f"{ns} create serviceaccount reader")
    sh(apiserver, f"{ns} create role get-cm --verb=get --resource=configmaps")
    sh(apiserver, f"{ns} create rolebinding r --role=get-cm --serviceaccount={namespace}:reader")
    sh(apiserver, f"{ns} create configmap cfg --from-literal=a=1")

    token = apiserver.service_account_token(namespace, "reader")
    kubeconfig = apiserver.kubeconfig_for_token(token, "reader", namespace)
    with api_client(kubeconfig) as api:
        core = client.CoreV1Api(api)
        assert core.read_namespaced_config_map("cfg", namespace).data == {"a": "1"}
        for forbidden in (
            lambda: core.list_namespaced_config_map(namespace),
            lambda: core.create_namespaced_config_map(namespace, {"metadata": {"name": "nope"}}),
        ):
            with pytest.raises(ApiException) as denied:
                forbidden()
            assert denied.value.status == 403
    whoami = sh(
        apiserver, "auth whoami -o jsonpath={.status.userInfo.username}", kubeconfig=kubeconfig
    )
    assert whoami == f"system:serviceaccount:{namespace}:reader"


def pod(name: str, privileged: bool) -> dict:
    """A Pod that breaks (privileged) or meets (not) the restricted Pod Security Standard."""
    security = (
        {"privileged": True}
        if privileged
        else {
            "allowPrivilegeEscalation": False,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }
    )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": security}]},
    }


def test_pod_security_admission_restricted(apiserver: ApiServer, admin: client.ApiClient) -> None:
    """PodSecurity admission refuses a privileged Pod in an enforce=restricted namespace."""
    ns = apiserver.create_namespace(
        "restricted", {"pod-security.kubernetes.io/enforce": "restricted"}
    )
    core = client.CoreV1Api(admin)
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(ns, pod("bad", privileged=True))
    assert refused.value.status == 403
    assert 'violates PodSecurity "restricted:latest"' in status_message(refused.value)
    created = core.create_namespaced_pod(ns, pod("good", privileged=False))
    assert created.status.phase == "Pending"  # stored, never scheduled: no scheduler


OPERATOR = textwrap.dedent("""
    import kopf

    @kopf.on.startup()
    def configure(settings: kopf.OperatorSettings, **_):
        settings.posting.enabled = False

    @kopf.on.event("configmaps")
    def seen(name, namespace, **_):
        print(f"HARNESS-SAW {namespace}/{name}", flush=True)
""")


class LineReader:
    """Collects a subprocess's output lines on a thread; waits for a marker line."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.thread = threading.Thread(target=self._pump, args=(proc,), daemon=True)
        self.thread.start()

    def _pump(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.lines.put(line)

    def wait_for_line(self, needle: str, timeout: float) -> str:
        """Return the first new line containing ``needle``; raise after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if needle in line:
                return line
        raise TimeoutError(f"no line with {needle!r} in {timeout}s:\n" + "".join(self.seen))


def grant_kopf_rbac(apiserver: ApiServer, namespace: str, sa: str) -> None:
    """What kopf needs to watch configmaps in ``namespace`` without events or patches."""
    subject = f"--serviceaccount={namespace}:{sa}"
    # kopf 1.45 lists namespaces even for `-n NAME`; without this it backs off ~55s.
    cluster = "--resource=namespaces,customresourcedefinitions.apiextensions.k8s.io"
    sh(apiserver, f"create clusterrole {namespace}-kopf --verb=list,watch {cluster}")
    sh(
        apiserver,
        f"create clusterrolebinding {namespace}-kopf --clusterrole={namespace}-kopf {subject}",
    )
    sh(apiserver, f"-n {namespace} create role cm --verb=get,list,watch --resource=configmaps")
    sh(apiserver, f"-n {namespace} create rolebinding kopf-cm --role=cm {subject}")


def test_kopf_logs_in_with_a_token_kubeconfig(
    apiserver: ApiServer, namespace: str, tmp_path: Path
) -> None:
    """kopf logs in with a ServiceAccount-token kubeconfig, watches, handles, exits on TERM."""
    sh(apiserver, f"-n {namespace} create serviceaccount operator")
    grant_kopf_rbac(apiserver, namespace, "operator")
    token = apiserver.service_account_token(namespace, "operator")
    kubeconfig = apiserver.kubeconfig_for_token(token, "operator", namespace)
    (tmp_path / "op.py").write_text(OPERATOR)
    argv = [sys.executable, "-m", "kopf", "run", "--standalone", "--verbose"]
    argv += ["-n", namespace, str(tmp_path / "op.py")]

    with subprocess.Popen(
        argv,
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    ) as proc:
        out = LineReader(proc)
        try:
            out.wait_for_line(f"Starting the watch-stream for configmaps.v1 in '{namespace}'", 60)
            sh(apiserver, f"-n {namespace} create configmap ping")
            out.wait_for_line(f"HARNESS-SAW {namespace}/ping", 30)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        finally:
            stop_process(proc)
            out.thread.join(timeout=10)
