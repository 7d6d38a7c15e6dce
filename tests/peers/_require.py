"""Peer availability: skip when a peer program is missing, but fail when GASIOT_REQUIRE_PEERS=1
(CI sets it, so a broken install cannot silently turn the peer checks into skips)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def _missing(what: str) -> None:
    if os.environ.get("GASIOT_REQUIRE_PEERS") == "1":
        pytest.fail(f"{what} (required: GASIOT_REQUIRE_PEERS=1)")
    pytest.skip(what)


def require_tool(name: str) -> str:
    """Absolute path of program ``name``; skip (or fail, see module doc) when it is not installed."""
    path = shutil.which(name)
    if path is None:
        _missing(f"peer tool {name!r} is not installed")
    assert path is not None
    return path


def require_pkg_config(package: str) -> list[str]:
    """Compiler and linker flags for ``package`` from pkg-config; skip/fail when unavailable."""
    pkg_config = require_tool("pkg-config")
    result = subprocess.run([pkg_config, "--cflags", "--libs", package], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        _missing(f"pkg-config does not know {package!r}: {result.stderr.strip()}")
    return result.stdout.split()
