"""Fixtures for the scenarios on a real single-node Kubernetes (kubelet + containerd).

The node is brought up once per session by .ci/cluster/up.sh, with the image rebuilt from the
current checkout, and torn down at the end by .ci/cluster/down.sh, which fails the run if any
process, mount, network namespace, cgroup or sysctl change is left behind.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from node import ROOT, Cluster, missing_tools
from scenario import set_up_shop

import workerpool

HERE = Path(__file__).parent.resolve()
_FIGURES: dict[str, str] = {}


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker here too, so the folder works under --strict-markers."""
    config.addinivalue_line("markers", "cluster: needs a real single-node Kubernetes")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test in this folder `cluster` and run them last: the node is torn down when
    the session ends, so it does not load the machine while the other suites run."""
    ours = [item for item in items if HERE in Path(str(item.fspath)).resolve().parents]
    for item in ours:
        item.add_marker(pytest.mark.cluster)
        item.add_marker(pytest.mark.timeout(900))  # the first one also builds and starts the node
    items[:] = [item for item in items if item not in ours] + ours


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _FIGURES:
        terminalreporter.section("single-node cluster: measured")
        for what, value in _FIGURES.items():
            terminalreporter.write_line(f"{what}: {value}")


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """The node, Ready, with the operator image of this checkout loaded (as `kind load` does)."""
    why = missing_tools()
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    node = Cluster()
    node.figures = _FIGURES
    try:
        node.up()
        node.build(f"docker.io/library/workerpool:{workerpool.__version__}", ROOT)
        yield node
    finally:
        node.down()


@pytest.fixture(autouse=True)
def no_leftover_children() -> Iterator[None]:
    """The cluster's daemons outlive each test by design; down.sh checks them at the end."""
    yield


@pytest.fixture(scope="session")
def shop(cluster: Cluster) -> Cluster:
    """The user's image as the operator, Redis in the cluster, the pools of manifests/pools.yaml."""
    return set_up_shop(cluster)
