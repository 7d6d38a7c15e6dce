"""A small real filesystem (tmpfs) for disk-full tests: mounted for the test, always unmounted.
Needs root (as here and in CI); elsewhere the test skips, or fails when GASIOT_REQUIRE_PEERS=1
(a capability that silently went missing must not turn the disk-full proofs into skips)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from peers._require import _missing


def fill(path: Path, *, chunk: int = 4096) -> int:
    """Write ``path`` until the filesystem refuses (a runaway log); returns the bytes written."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        while True:  # bounded: the filesystem is small and ENOSPC ends it
            written += os.write(fd, b"x" * chunk)
    except OSError:
        if chunk > 1:
            with contextlib.suppress(OSError):
                while True:  # the last partial block
                    written += os.write(fd, b"x")
    finally:
        os.close(fd)
    return written


def free_bytes(path: Path) -> int:
    vfs = os.statvfs(path)
    return vfs.f_bavail * vfs.f_frsize


@contextlib.contextmanager
def small_filesystem(where: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` (``mount -o size=``, e.g. "3m") on ``where``."""
    if os.geteuid() != 0:
        _missing("mounting a small tmpfs needs root")
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if done.returncode != 0:
        _missing(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield where
    finally:
        result = subprocess.run(["umount", str(where)], capture_output=True, text=True, check=False, timeout=30)
        if result.returncode != 0:  # something still holds it: detach it lazily, never leave it behind
            subprocess.run(["umount", "-l", str(where)], check=False, timeout=30)
