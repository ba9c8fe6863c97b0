"""Smoke tests proving the harness runs a real, enforcing kube-apiserver."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from apiserver import ApiServer, stop_process, wait_for

GROUP, VERSION, PLURAL = "harness.workerpool.test", "v1", "ranges"

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "range", "kind": "Range"},
        "versions": [{
            "name": VERSION, "served": True, "storage": True,
            "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {
                    "type": "object",
                    "required": ["min", "max"],
                    "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}},
                    "x-kubernetes-validations": [
                        {"rule": "self.min <= self.max", "message": "min must not exceed max"}],
                },
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            }}},
        }],
    },
}


def api_client(kubeconfig: Path) -> client.ApiClient:
    """A kubernetes.client ApiClient for a kubeconfig file."""
    return config.new_client_from_config(config_file=str(kubeconfig))


@pytest.fixture(scope="module")
def admin(apiserver: ApiServer) -> Iterator[client.ApiClient]:
    with api_client(apiserver.admin_kubeconfig) as api:
        yield api


def crd_established(ext: client.ApiextensionsV1Api, name: str) -> bool | None:
    crd = ext.read_custom_resource_definition(name)
    conditions = crd.status.conditions or []
    return True if any(c.type == "Established" and c.status == "True"
                       for c in conditions) else None


def test_version_is_real(apiserver: ApiServer) -> None:
    out = json.loads(apiserver.kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["gitVersion"].startswith("v1.")
    assert out["clientVersion"]["gitVersion"] == out["serverVersion"]["gitVersion"]


def test_crd_cel_validation_and_status(admin: client.ApiClient, namespace: str) -> None:
    ext = client.ApiextensionsV1Api(admin)
    ext.create_custom_resource_definition(CRD)
    wait_for("CRD Established", lambda: crd_established(ext, CRD["metadata"]["name"]), 30)
    objs = client.CustomObjectsApi(admin)

    def rng(name: str, lo: int, hi: int) -> dict:
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Range",
                "metadata": {"name": name}, "spec": {"min": lo, "max": hi}}

    objs.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, rng("ok", 1, 2))
    with pytest.raises(ApiException) as refused:
        objs.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, rng("bad", 3, 2))
    assert refused.value.status == 422
    assert "min must not exceed max" in refused.value.body

    patched = objs.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "ok", {"status": {"phase": "Seen"}})
    assert patched["status"] == {"phase": "Seen"}


def test_rbac_is_enforced_for_service_account_tokens(
        apiserver: ApiServer, admin: client.ApiClient, namespace: str) -> None:
    k = apiserver.kubectl
    k("-n", namespace, "create", "serviceaccount", "reader")
    k("-n", namespace, "create", "role", "get-cm", "--verb=get", "--resource=configmaps")
    k("-n", namespace, "create", "rolebinding", "reader-get-cm", "--role=get-cm",
      f"--serviceaccount={namespace}:reader")
    k("-n", namespace, "create", "configmap", "cfg", "--from-literal=a=1")

    token = apiserver.service_account_token(namespace, "reader")
    kubeconfig = apiserver.kubeconfig_for_token(token, "reader", namespace)
    with api_client(kubeconfig) as api:
        core = client.CoreV1Api(api)
        assert core.read_namespaced_config_map("cfg", namespace).data == {"a": "1"}
        for forbidden in (
            lambda: core.list_namespaced_config_map(namespace),
            lambda: core.create_namespaced_config_map(
                namespace, {"metadata": {"name": "nope"}}),
        ):
            with pytest.raises(ApiException) as denied:
                forbidden()
            assert denied.value.status == 403
    whoami = k("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}",
               kubeconfig=kubeconfig).stdout
    assert whoami == f"system:serviceaccount:{namespace}:reader"


def pod(name: str, privileged: bool) -> dict:
    security = {"privileged": True} if privileged else {
        "allowPrivilegeEscalation": False, "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                                     "securityContext": security}]}}


def test_pod_security_admission_restricted(apiserver: ApiServer,
                                           admin: client.ApiClient) -> None:
    ns = apiserver.create_namespace(
        "restricted", {"pod-security.kubernetes.io/enforce": "restricted"})
    core = client.CoreV1Api(admin)
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(ns, pod("bad", privileged=True))
    assert refused.value.status == 403
    assert 'violates PodSecurity "restricted' in refused.value.body
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
        threading.Thread(target=self._pump, args=(proc,), daemon=True).start()

    def _pump(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            self.lines.put(line)

    def wait_for_line(self, needle: str, timeout: float) -> str:
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


def test_kopf_logs_in_with_a_token_kubeconfig(apiserver: ApiServer, namespace: str,
                                              tmp_path: Path) -> None:
    k = apiserver.kubectl
    k("-n", namespace, "create", "serviceaccount", "operator")
    k("create", "clusterrole", f"{namespace}-crds", "--verb=list,watch",
      "--resource=customresourcedefinitions.apiextensions.k8s.io")
    k("create", "clusterrolebinding", f"{namespace}-crds", f"--clusterrole={namespace}-crds",
      f"--serviceaccount={namespace}:operator")
    k("-n", namespace, "create", "role", "watch-cm", "--verb=get,list,watch",
      "--resource=configmaps")
    k("-n", namespace, "create", "rolebinding", "operator-cm", "--role=watch-cm",
      f"--serviceaccount={namespace}:operator")
    token = apiserver.service_account_token(namespace, "operator")
    kubeconfig = apiserver.kubeconfig_for_token(token, "operator", namespace)
    (tmp_path / "op.py").write_text(OPERATOR)

    proc = subprocess.Popen(
        [sys.executable, "-m", "kopf", "run", "--standalone", "--verbose",
         "-n", namespace, str(tmp_path / "op.py")],
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        text=True)
    try:
        out = LineReader(proc)
        out.wait_for_line(f"Starting the watch-stream for configmaps.v1 in '{namespace}'", 60)
        k("-n", namespace, "create", "configmap", "ping")
        out.wait_for_line(f"HARNESS-SAW {namespace}/ping", 30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        stop_process(proc)
