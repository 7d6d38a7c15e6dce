"""Fixtures shared by the peer tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from peers._require import _missing, require_tool

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def node_opcua() -> Path:
    """node, with node-opcua installed in tests/peers/node_modules (npm ci when missing)."""
    node_bin = require_tool("node")
    if not (HERE / "node_modules" / "node-opcua" / "package.json").is_file():
        npm = require_tool("npm")
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, capture_output=True, text=True, timeout=600, check=False
        )
        if result.returncode != 0:
            _missing(f"npm ci in {HERE} failed: {result.stderr.strip()[-500:]}")
    return Path(node_bin)
