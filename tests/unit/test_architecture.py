"""The layers written in the README hold (import-linter contracts in pyproject.toml)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from helpers import ROOT


def test_import_contracts_are_kept():
    exe = shutil.which("lint-imports")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("import-linter is missing in CI")
        pytest.skip("import-linter is not installed")
    done = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
