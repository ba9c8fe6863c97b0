"""The operator as a container runs it: a uid with no passwd entry, no USER or LOGNAME.

The image runs as uid 10001 and OpenShift picks arbitrary uids; Kubernetes sets neither USER
nor LOGNAME. kopf's default identity calls getpass.getuser(), which then raises KeyError and
the operator crash-loops. The operator must name itself (POD_ID, else the hostname).
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
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, TESTS, free_port, wait_until

NS = "workerpool"
NOBODY_UID = 54321  # no passwd entry on any sane test machine
# a uid of its own, but the file access of the test's (root) user, so the interpreter and the
# checkout under /root stay readable: only the identity changes
AS_NOBODY = ["setpriv", f"--reuid={NOBODY_UID}", f"--regid={NOBODY_UID}", "--clear-groups",
             "--inh-caps=+dac_override,+dac_read_search",
             "--ambient-caps=+dac_override,+dac_read_search"]


def test_operator_serves_as_a_uid_with_no_passwd_entry(apiserver: Any, tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv (util-linux) to run a process as another uid")
    with pytest.raises(KeyError):
        pwd.getpwuid(NOBODY_UID)
    apiserver.kubectl("apply", "-k", str(ROOT / "deploy"))
    apiserver.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                      "crd/workerpools.workerpool.dev")
    token = apiserver.service_account_token(NS, "workerpool-operator")
    kubeconfig = apiserver.kubeconfig_for_token(token, "operator", NS)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("USER", "LOGNAME", "LNAME", "USERNAME", "POD_ID")}
    env |= {"KUBECONFIG": str(kubeconfig), "WORKERPOOL_STATE_DIR": str(tmp_path / "state"),
            "PYTHONPATH": f"{TESTS}{os.pathsep}{ROOT}", "PYTHONDONTWRITEBYTECODE": "1"}
    log = tmp_path / "operator.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([*AS_NOBODY, sys.executable, "-m", "workerpool", "operator", "-n", NS,
                                 f"--liveness=http://127.0.0.1:{port}/healthz"],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
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
