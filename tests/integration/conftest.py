"""Fixtures the integration tests share."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from topologies import ClusterSet


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterSet]:
    """A Redis Cluster of three primaries, started once for the tests that need one."""
    if not shutil.which("redis-cli"):  # redis-cli --cluster create builds it
        if os.environ.get("CI") == "true":
            pytest.fail("redis-cli is missing in CI")
        pytest.skip("redis-cli is not installed")
    topology = ClusterSet(tmp_path_factory.mktemp("cluster"))
    try:
        yield topology.start()
    finally:
        topology.stop()
