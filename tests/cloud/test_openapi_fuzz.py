"""Schemathesis (an independent tool) generates requests from our OpenAPI document for every
route, with an admin's credentials and without, against a real `gasiot cloud serve`: none may
answer with a server error.  Bounded: a fixed seed and a few examples per operation."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from peers._require import require_tool

EXAMPLES = "8"


@pytest.fixture
def cloud_url(tmp_path: Path) -> Iterator[tuple[str, str]]:
    key_file = tmp_path / "admin.key"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gasiot",
            "cloud",
            "serve",
            "--db",
            f"sqlite:///{tmp_path / 'cloud.db'}",
            "--listen",
            "127.0.0.1:0",
            "--admin-key-file",
            str(key_file),
            "--insecure-dev",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "gasiot cloud listening on URL" (blocks until ready)
        assert "listening on" in line, line + (proc.stderr.read() if proc.stderr else "")
        yield line.rsplit(" ", 1)[1].strip(), key_file.read_text().strip()
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
        assert "incident" not in stderr, stderr[-3000:]  # an unhandled error inside a handler


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
