"""The operator as a container runs it: a uid with no passwd entry, no USER or LOGNAME.

The image runs as uid 10001 and OpenShift picks arbitrary uids; Kubernetes sets neither USER
nor LOGNAME. kopf's default identity calls getpass.getuser(), which then raises KeyError and
the operator crash-loops. The operator must name itself (POD_ID, else the hostname).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apiserver import kubeconfig_yaml
from helpers import ROOT, TESTS, free_port, wait_until

NS = "workerpool"
NOBODY_UID = 54321  # no passwd entry on any sane test machine


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    """A directory the unprivileged uid can read and write (pytest's tmp_path is 0700)."""
    d = Path(tempfile.mkdtemp(prefix="wp-uid-"))
    d.chmod(0o777)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_operator_serves_as_a_uid_with_no_passwd_entry(apiserver: Any, world_readable_dir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run a process as another uid")
    with pytest.raises(KeyError):
        __import__("pwd").getpwuid(NOBODY_UID)
    apiserver.kubectl("apply", "-k", str(ROOT / "deploy"))
    apiserver.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                      "crd/workerpools.workerpool.dev")
    d = world_readable_dir
    shutil.copy(apiserver.ca_file, d / "ca.crt")
    token = apiserver.service_account_token(NS, "workerpool-operator")
    (d / "kubeconfig").write_text(kubeconfig_yaml(apiserver.url, d / "ca.crt", "operator", token, NS))
    for f in d.iterdir():
        f.chmod(0o644)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("USER", "LOGNAME", "POD_ID", "HOME")}
    env |= {"KUBECONFIG": str(d / "kubeconfig"), "WORKERPOOL_STATE_DIR": str(d / "state"),
            "PYTHONPATH": f"{TESTS}{os.pathsep}{ROOT}", "PYTHONDONTWRITEBYTECODE": "1"}
    log = d / "operator.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "workerpool", "operator", "-n", NS,
                                 f"--liveness=http://127.0.0.1:{port}/healthz"],
                                stdout=out, stderr=subprocess.STDOUT, env=env,
                                user=NOBODY_UID, group=NOBODY_UID, extra_groups=[])
        try:
            health = wait_until(lambda: proc.poll() is None and _health(port), 30,
                                what="the health endpoint; log:\n" + log.read_text()[-2000:])
            assert health == {"pools": 0}
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(30)
    text = log.read_text()
    assert code == 0, text[-2000:]
    assert "KeyError" not in text and "Traceback" not in text, text[-2000:]


def _health(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return dict(json.loads(response.read()))
    except OSError:
        return None
