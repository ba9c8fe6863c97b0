"""Helpers of the metrics tests: binaries that CI must have, scraping a master."""

from __future__ import annotations

import os
import shutil
import urllib.request

import pytest


def need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{binary} is missing in CI (apt-get install prometheus)")
        pytest.skip(f"{binary} is not installed (apt-get install prometheus)")
    return path


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()
