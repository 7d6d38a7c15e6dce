"""Schemathesis (an independent tool) generates requests from our OpenAPI document for every
route, with an admin's credentials and without, against a real `gasiot cloud serve`: none may
answer with a server error.  Bounded: a fixed seed and a few examples per operation."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from peers._require import require_tool

EXAMPLES = "8"


@pytest.mark.peer
@pytest.mark.slow
@pytest.mark.parametrize("authenticated", [True, False], ids=["admin", "anonymous"])
def test_no_server_errors(cloud_url: tuple[str, str], authenticated: bool) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or require_tool("st")
    url, key = cloud_url
    command = [st, "run", f"{url}/openapi.json", "--checks", "not_a_server_error", "-n", EXAMPLES, "--seed", "7"]
    if authenticated:
        command += ["-H", f"Authorization: Bearer {key}"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-6000:]
    assert "passed" in run.stdout and "Server error" not in run.stdout
