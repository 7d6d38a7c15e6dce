"""The real edge daemon as a separate process (`gasiot edge run`), and what a test reads beside it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any


async def start_edge(station_file: Path, log: Path) -> asyncio.subprocess.Process:
    """`python -m gasiot edge run STATION` with its log appended to ``log``."""
    with log.open("ab") as sink:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gasiot", "edge", "run", str(station_file), "--log-level", "INFO",
            stdout=asyncio.subprocess.DEVNULL, stderr=sink, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip


def edge_counters(db: Path) -> dict[str, int]:
    """The store's committed counters and ``buffered`` (telemetry rows held), read beside the
    daemon on a read-only connection (a WAL reader never blocks the writer).  A fresh file the
    daemon has created but not yet given its tables (just after it set a damaged one aside) reads
    as holding nothing."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
        try:
            counters = dict(conn.execute("SELECT name, value FROM counters").fetchall())
            (counters["buffered"],) = conn.execute("SELECT count(*) FROM readings").fetchone()
        except sqlite3.OperationalError as err:
            if "no such table" not in str(err):
                raise
            return {"buffered": 0}
    return counters


def edge_events(db: Path, kind: str) -> list[dict[str, Any]]:
    """The data of the events of ``kind`` still in the store (not yet acknowledged)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
        rows = conn.execute("SELECT data FROM events WHERE kind=?", (kind,)).fetchall()
    return [json.loads(d) for (d,) in rows]


async def edge_status(station_file: Path) -> dict[str, Any]:
    """`gasiot edge status --json STATION`, parsed."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gasiot", "edge", "status", "--json", str(station_file),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return dict(json.loads(out))
