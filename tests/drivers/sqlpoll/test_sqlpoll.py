"""Intermediate database: the gateway polls a SCADA history table (SQLite file, and a real
PostgreSQL server) incrementally, read-only, and maps rows to gate-station properties."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from drivers.sqlpoll.config import SqlPollChannel
from edge.config import load_station
from edge.runtime import Gateway
from gascore.crypto import generate_signer
from gascore.records import Lane
from support.postgres import running_postgres
from support.station import MODELS, write_station
from support.wait import eventually

POINTS = {
    "inlet_pressure": {"column": "pt101"},
    "outlet_pressure": {"column": "pt201"},
    "inlet_valve_open": {"column": "xv101"},
}
DDL = "CREATE TABLE scada_history (id INTEGER PRIMARY KEY, tag TEXT, ts BIGINT, pt101 REAL, pt201 REAL, xv101 INTEGER)"


def rows(start: int, n: int, tag: str = "GS01") -> list[tuple[Any, ...]]:
    return [(i, tag, 1_800_000_000_000 + i * 1000, 4.0 + i / 100, 1.6, i % 2) for i in range(start, start + n)]


def station(tmp: Path, url: str, start: str = "latest") -> Path:
    channel: dict[str, Any] = {
        "id": "hist",
        "driver": "sql_poll",
        "url": url,
        "table": "scada_history",
        "key_column": "id",
        "device_column": "tag",
        "timestamp_column": "ts",
        "poll_interval_s": 0.05,
        "start": start,
        "batch_limit": 7,
    }
    data = {
        "gateway": {"id": "gw-db", "cloud_url": "http://127.0.0.1:9", "data_dir": str(tmp / "edge")},
        "models": [str(MODELS)],
        "channels": [channel],
        "devices": [
            {"id": "GS01", "model": "gate_station", "channel": "hist", "max_silent_s": 0.001, "points": POINTS}
        ],
    }
    return write_station(tmp / "station.yaml", data)


async def run_until(gateway: Gateway, predicate: Any) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop, flush_timeout_s=0.1))
    try:
        await eventually(predicate, what="rows delivered")
    finally:
        stop.set()
        await task


def telemetry(gateway: Gateway) -> list[list[Any]]:
    return gateway.store.read_all(Lane.TELEMETRY)


def reopened(tmp: Path) -> list[list[Any]]:
    from edge.store import SqliteStore

    store = SqliteStore(tmp / "edge" / "gateway.db")
    try:
        return store.read_all(Lane.TELEMETRY)
    finally:
        store.close()


async def test_sqlite_history_is_read_incrementally_and_read_only(tmp_path: Path) -> None:
    db = tmp_path / "scada.db"
    with sqlite3.connect(db) as conn:
        conn.execute(DDL)
        conn.executemany("INSERT INTO scada_history VALUES (?,?,?,?,?,?)", rows(1, 5))  # before start: skipped
    gateway = Gateway.build(load_station(station(tmp_path, f"sqlite:///{db}")), signer=generate_signer())
    driver = gateway.push_channels[0].driver
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop, flush_timeout_s=0.1))
    await eventually(lambda: driver.last_key == 5, what="start at the latest row")
    with sqlite3.connect(db) as conn:
        conn.executemany("INSERT INTO scada_history VALUES (?,?,?,?,?,?)", rows(6, 20) + rows(26, 3, tag="OTHER"))
    await eventually(lambda: driver.last_key == 28, what="new rows")
    stored = {(r[1], r[2]): r for r in telemetry(gateway)}
    stop.set()
    await task
    assert driver.rows_read == 23 and driver.unrouted == 3
    assert stored[("inlet_pressure", 1_800_000_025_000)][3] == pytest.approx(4.25)
    assert stored[("inlet_valve_open", 1_800_000_007_000)][3] is True
    assert not any(ts < 1_800_000_006_000 for _, ts in stored)
    with pytest.raises(sqlite3.OperationalError, match=r"readonly|read-only"):  # the driver's own connection
        from drivers.sqlpoll.source import SqliteSource

        src = SqliteSource(
            SqlPollChannel.model_validate({"url": f"sqlite:///{db}", "table": "scada_history", "key_column": "id"}),
            ["pt101"],
        )
        await src.open()
        assert src._conn is not None
        src._conn.execute("DELETE FROM scada_history")


def test_identifiers_and_urls_are_checked() -> None:
    base = {"url": "sqlite:///x.db", "table": "t", "key_column": "id"}
    for bad in (
        {"table": "t; DROP TABLE x"},
        {"key_column": "id desc"},
        {"url": "mysql://x"},
        {"url": "postgresql://u:secret@h/db"},
    ):
        with pytest.raises(ValueError):
            SqlPollChannel.model_validate({**base, **bad})
    assert SqlPollChannel.model_validate({**base, "table": "scada.history"}).table == "scada.history"


@pytest.mark.peer
async def test_postgresql_history(tmp_path: Path) -> None:
    import psycopg

    with running_postgres(tmp_path) as pg:
        async with await psycopg.AsyncConnection.connect(pg.url, autocommit=True) as conn:
            await conn.execute(DDL)
            async with conn.cursor() as cur:
                await cur.executemany("INSERT INTO scada_history VALUES (%s,%s,%s,%s,%s,%s)", rows(1, 10))
        gateway = Gateway.build(load_station(station(tmp_path, pg.url, start="all")), signer=generate_signer())
        driver = gateway.push_channels[0].driver
        await run_until(gateway, lambda: driver.last_key == 10)
        stored = {(r[1], r[2]): r[3] for r in reopened(tmp_path)}
        assert stored[("outlet_pressure", 1_800_000_010_000)] == pytest.approx(1.6)
        assert len([k for k in stored if k[0] == "inlet_pressure"]) == 10
