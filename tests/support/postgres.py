"""A real PostgreSQL server in a temporary directory, on a free loopback port (started as the
`postgres` user when the tests run as root, since PostgreSQL refuses to run as root)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from peers._require import _missing

from support.mosquitto import free_port


@dataclass(frozen=True)
class Postgres:
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        _missing("PostgreSQL server binaries (initdb) are not installed")
    return Path(found[-1]).parent


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    runuser = shutil.which("runuser")
    if runuser is None:
        _missing("runuser is needed to start PostgreSQL as root")
    return [str(runuser), "-u", "postgres", "--", *cmd]


@contextlib.contextmanager
def running_postgres(tmp: Path) -> Iterator[Postgres]:
    bindir = _bin_dir()
    # Outside pytest's tmp tree: that is private to root, and the server runs as `postgres`.
    data = Path(tempfile.mkdtemp(prefix="gasiot-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    port = free_port()
    subprocess.run(
        _as_postgres([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"]),
        check=True,
        capture_output=True,
        timeout=120,
    )
    opts = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-w", "-l", str(data / "log"), "start"]),
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        yield Postgres(port)
    finally:
        subprocess.run(
            _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
            check=False,
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(data, ignore_errors=True)


_databases = [0]


def fresh_database(pg: Postgres) -> str:
    """A new, empty database on ``pg`` (one per test: tests never see each other's tables)."""
    import psycopg

    _databases[0] += 1
    name = f"t{os.getpid()}_{_databases[0]}"
    with psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://postgres@127.0.0.1:{pg.port}/{name}"
