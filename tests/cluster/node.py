"""The single-node cluster of .ci/cluster/ seen from Python: build, start, kubectl, stop.

Plain Python (no pytest). Every action is one of the .ci/cluster scripts, so what the tests
do is what a developer does by hand (README, "Development").
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / ".ci" / "cluster"
K8S_VERSION = os.environ.get("WORKERPOOL_K8S_VERSION", "v1.36.3")
_K8S_CACHE = Path(os.environ.get("WORKERPOOL_K8S_CACHE", Path.home() / ".cache" / "workerpool-k8s"))
NEEDED_PROGRAMS = ("nsenter", "ip", "buildah", "podman", "containerd", "ctr", "runc", "openssl", "curl",
                   "redis-cli")


def missing_tools() -> str | None:
    """Why this machine cannot run the cluster (None if it can): root, programs, binaries."""
    if os.geteuid() != 0:
        return "the single-node cluster needs root (network namespace, containerd, kubelet)"
    absent = [p for p in NEEDED_PROGRAMS if shutil.which(p) is None]
    for stamp in ("bin/.complete", "node-bin/.complete"):
        if not (_K8S_CACHE / K8S_VERSION / stamp).exists():
            absent.append(f"{_K8S_CACHE / K8S_VERSION / stamp}")
    if absent:
        return f"missing {', '.join(absent)}: run `bash .ci/cluster/prepare.sh`"
    return None


def script(name: str, *args: str, input: str | None = None, check: bool = True,
           timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run .ci/cluster/NAME.sh with args; output captured as text."""
    result = subprocess.run(["bash", str(SCRIPTS / f"{name}.sh"), *args], input=input,
                            capture_output=True, text=True, timeout=timeout,
                            stdin=None if input is not None else subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise AssertionError(f"{name}.sh {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


class Cluster:
    """A running node: kubectl, commands in its network namespace, image loading."""

    def __init__(self) -> None:
        self.figures: dict[str, str] = {}  # what the run measured, shown in pytest's summary

    def up(self) -> None:
        script("down", timeout=300)  # a crashed earlier run's leftovers, if any
        began = time.monotonic()
        script("up", timeout=300)
        self.note("cluster up (node Ready)", time.monotonic() - began)

    def down(self) -> None:
        script("down", timeout=300)

    def build(self, ref: str, context: Path) -> Path:
        """Build an image from `context` (docker build -t REF CONTEXT) and load it into the node."""
        began = time.monotonic()
        tar = Path(script("build-image", ref, str(context), timeout=1200).stdout.strip().splitlines()[-1])
        script("load-image", str(tar))
        self.note(f"build + load {ref}", time.monotonic() - began)
        return tar

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return script("kubectl", *args, input=input, check=check, timeout=timeout)

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def in_ns(self, *argv: str, input: str | None = None,
              check: bool = True) -> subprocess.CompletedProcess[str]:
        """A command in the cluster's network namespace, where Service and pod IPs answer."""
        return script("in-ns", *argv, input=input, check=check, timeout=120)

    def note(self, what: str, seconds: float | str) -> None:
        self.figures[what] = seconds if isinstance(seconds, str) else f"{seconds:.1f} s"
