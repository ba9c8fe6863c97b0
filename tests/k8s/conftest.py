"""Fixtures for tests that need a real kube-apiserver (see HARNESS.md)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from apiserver import ApiServer, bin_dir, find_binaries

HERE = Path(__file__).parent.resolve()


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker here too, so the folder works under --strict-markers."""
    config.addinivalue_line("markers", "k8s: needs kube-apiserver+etcd")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test in this folder with ``k8s``."""
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.k8s)


@pytest.fixture(scope="session")
def apiserver() -> Iterator[ApiServer]:
    """A running etcd + kube-apiserver for the whole session, stopped at the end."""
    binaries = find_binaries()
    if binaries is None:
        message = (
            f"kube-apiserver/etcd/kubectl not found in {bin_dir()}: "
            "run `bash .ci/build-k8s.sh` or set WORKERPOOL_K8S_BIN"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    with ApiServer(binaries) as server:
        yield server


@pytest.fixture
def namespace(apiserver: ApiServer) -> str:
    """A fresh namespace per test (never deleted: no namespace controller runs)."""
    return apiserver.create_namespace("test")
