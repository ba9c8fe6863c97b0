"""How the operator starts in a pod: with no passwd entry, and before it may list WorkerPools.

The image runs as uid 10001 and OpenShift picks arbitrary uids; Kubernetes sets neither USER
nor LOGNAME. kopf's default identity calls getpass.getuser(), which then raises KeyError and
the operator crash-loops. The operator must name itself (POD_ID, else the hostname).

`kubectl apply -k deploy/` creates the CRD, the Role and the operator at once, so its first list
of WorkerPools may fail (404 or 429 while the CRD is set up, 403 until RBAC caught up). It must
wait for the API without an ERROR, and report healthy (Ready) only once it serves.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import ROOT, TESTS, free_port, wait_until

NS = "workerpool"
NOBODY_UID = 54321  # no passwd entry on any sane test machine
# a uid of its own, but the file access of the test's (root) user, so the interpreter and the
# checkout under /root stay readable: only the identity changes
AS_NOBODY = ["setpriv", f"--reuid={NOBODY_UID}", f"--regid={NOBODY_UID}", "--clear-groups",
             "--inh-caps=+dac_override,+dac_read_search",
             "--ambient-caps=+dac_override,+dac_read_search"]


@pytest.fixture(scope="module")
def crd(apiserver: Any) -> Any:
    apiserver.kubectl("apply", "-k", str(ROOT / "deploy"))
    apiserver.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                      "crd/workerpools.workerpool.dev")
    return apiserver


class Operator:
    """`workerpool operator -n NAMESPACE` with the ServiceAccount's token and a health endpoint."""

    def __init__(self, apiserver: Any, tmp: Path, namespace: str, prefix: tuple[str, ...] = ()) -> None:
        token = apiserver.service_account_token(namespace, "workerpool-operator")
        kubeconfig = apiserver.kubeconfig_for_token(token, "operator", namespace)
        self.port = free_port()
        env = {k: v for k, v in os.environ.items()
               if k not in ("USER", "LOGNAME", "LNAME", "USERNAME", "POD_ID")}
        env |= {"KUBECONFIG": str(kubeconfig), "WORKERPOOL_STATE_DIR": str(tmp / "state"),
                "PYTHONPATH": f"{TESTS}{os.pathsep}{ROOT}", "PYTHONDONTWRITEBYTECODE": "1"}
        self.log_path = tmp / "operator.log"
        with open(self.log_path, "w") as out:
            self.proc = subprocess.Popen(
                [*prefix, sys.executable, "-m", "workerpool", "operator", "-n", namespace,
                 f"--liveness=http://127.0.0.1:{self.port}/healthz"],
                stdout=out, stderr=subprocess.STDOUT, env=env)

    def log(self) -> str:
        return self.log_path.read_text()

    def health(self) -> dict[str, Any] | None:
        assert self.proc.poll() is None, self.log()[-2000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as resp:
                return dict(json.loads(resp.read()))
        except OSError:
            return None

    def stop(self) -> str:
        """SIGTERM; the whole log, once it exited 0 with no traceback, and no ERROR until then."""
        started = self.log()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        text = self.log()
        assert code == 0, text[-2000:]
        assert "Traceback" not in text and "KeyError" not in text, text[-2000:]
        # (kopf may log an ERROR for a request it had in flight when stopped: not a start-up's)
        assert "ERROR" not in started, started[-2000:]
        return text


@pytest.fixture
def operators(tmp_path: Path) -> Iterator[list[Operator]]:
    started: list[Operator] = []
    yield started
    for op in started:
        if op.proc.poll() is None:
            op.proc.kill()
            op.proc.wait()


def test_operator_serves_as_a_uid_with_no_passwd_entry(crd: Any, tmp_path: Path,
                                                        operators: list[Operator]) -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv (util-linux) to run a process as another uid")
    with pytest.raises(KeyError):
        pwd.getpwuid(NOBODY_UID)
    op = Operator(crd, tmp_path, NS, prefix=tuple(AS_NOBODY))
    operators.append(op)
    assert wait_until(op.health, 30, what="the health endpoint") == {"pools": 0}
    op.stop()


def test_operator_waits_for_its_rights_then_serves_without_an_error(
        crd: Any, tmp_path: Path, operators: list[Operator], redis_url: str) -> None:
    namespace = crd.create_namespace("late")
    crd.kubectl("create", "serviceaccount", "workerpool-operator", "-n", namespace)
    op = Operator(crd, tmp_path, namespace)  # no Role yet: listing WorkerPools is forbidden
    operators.append(op)
    wait_until(lambda: "waiting for the API server to serve WorkerPools" in op.log(), 30,
               what="the operator to wait")
    assert "403" in op.log()
    assert op.health() is None  # not Ready while it cannot watch
    rbac = [doc for doc in yaml.safe_load_all((ROOT / "deploy" / "rbac.yaml").read_text())
            if doc["kind"] in ("Role", "RoleBinding")]
    for doc in rbac:
        doc["metadata"]["namespace"] = namespace
        for subject in doc.get("subjects", []):
            subject["namespace"] = namespace
    crd.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(rbac))
    assert wait_until(op.health, 30, what="the health endpoint once allowed") == {"pools": 0}
    pool = {"apiVersion": "workerpool.dev/v1alpha1", "kind": "WorkerPool",
            "metadata": {"name": "late", "namespace": namespace},
            "spec": {"handler": "handlers:record", "minWorkers": 1, "redis": {"url": redis_url}}}
    crd.kubectl("apply", "-f", "-", input=json.dumps(pool))
    wait_until(lambda: json.loads(crd.kubectl("get", "wp", "late", "-n", namespace, "-o", "json").stdout)
               .get("status", {}).get("permanentWorkers") == 1, 30, what="the pool served")
    crd.kubectl("delete", "wp", "late", "-n", namespace, "--wait=true", "--timeout=60s")
    assert "WorkerPools are served" in op.stop()
