"""`kill -9` the cloud at random moments while a gateway syncs to it (inside ingest transactions
among them), restart it on the same database, repeat; afterwards the cloud holds every reading the
edge committed, exactly once, and every lane's seqs without a gap."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import sys
from pathlib import Path

import aiohttp
import pytest

from edge.config import load_station
from edge.enroll import enroll
from edge.runtime import Gateway
from edge.store import SqliteStore
from gascore.records import Lane
from gasiot_sim.modbus_server import RegulatorSimServer
from support.mosquitto import free_port
from support.reliability import record
from support.station import station_dict, write_station
from support.wait import eventually

KILLS = int(os.environ.get("GASIOT_CHAOS_KILLS", "20")) // 2


async def start_cloud(db: Path, port: int, key_file: Path, log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as sink:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gasiot", "cloud", "serve", "--db", f"sqlite:///{db}",
            "--listen", f"127.0.0.1:{port}", "--admin-key-file", str(key_file), "--insecure-dev",
            stdout=asyncio.subprocess.PIPE, stderr=sink,
        )  # fmt: skip
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    assert b"listening on" in line, log.read_text()
    return proc


def readings_in(db: Path) -> tuple[int, int]:
    with sqlite3.connect(db) as conn:
        (total,) = conn.execute("SELECT count(*) FROM readings").fetchone()
        (distinct,) = conn.execute(
            "SELECT count(*) FROM (SELECT DISTINCT device, point, ts_ms FROM readings)"
        ).fetchone()
    return int(total), int(distinct)


@pytest.mark.slow
async def test_cloud_sigkill_during_ingest(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("GASIOT_TEST_SEED", "20261126")))
    port, db, key_file, log = free_port(), tmp_path / "cloud.db", tmp_path / "admin.key", tmp_path / "cloud.log"
    cloud = await start_cloud(db, port, key_file, log)
    url = f"http://127.0.0.1:{port}"
    sim = RegulatorSimServer(seed=1, tick_s=0.05)
    sim_port = await sim.start()
    gateway: Gateway | None = None
    stop = asyncio.Event()
    task: asyncio.Task[None] | None = None
    try:
        data = station_dict(
            cloud_url=url, data_dir=tmp_path / "edge", ports=[sim_port], gateway_id="gw-cc", poll_interval_s=0.05,
            sync={"max_batch_records": 30, "max_batch_age_s": 0.05, "backoff_max_s": 0.2},
        )  # fmt: skip
        station_file = write_station(tmp_path / "station.yaml", data)
        station = load_station(station_file)
        admin = {"Authorization": f"Bearer {key_file.read_text().strip()}"}
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{url}/v1/enrollment-tokens", json={"gateway_id": "gw-cc"}, headers=admin) as r,
        ):
            token = (await r.json())["token"]
        await enroll(cloud_url=url, gateway_id="gw-cc", token=token, key_file=station.key_file)
        gateway = Gateway.build(station)
        task = asyncio.create_task(gateway.run(stop, flush_timeout_s=10))
        assert gateway.sync is not None
        for _ in range(KILLS):
            before = gateway.sync.stats.records_acked
            await eventually(lambda b=before: gateway.sync.stats.records_acked > b, timeout=30, what="acks")
            await asyncio.sleep(rng.uniform(0.0, 0.3))  # the kill moment, not a synchronisation
            cloud.send_signal(signal.SIGKILL)
            assert await cloud.wait() == -signal.SIGKILL
            cloud = await start_cloud(db, port, key_file, log)
        acked = gateway.sync.stats.records_acked
        await eventually(lambda: gateway.sync.stats.records_acked > acked, timeout=30, what="acks after the last kill")
        stop.set()
        await asyncio.wait_for(task, 60)
        task = None
        edge = SqliteStore(station.data_dir / "gateway.db")  # run() closed the gateway's
        c, buffered = edge.counters(), edge.buffered(Lane.TELEMETRY)
        edge.close()
        stored, distinct = readings_in(db)
        assert stored + buffered == c["telemetry_appended_total"], (stored, buffered, c)
        assert distinct == stored
        with sqlite3.connect(db) as conn:
            seqs = [s for (s,) in conn.execute("SELECT seq FROM batches WHERE lane='telemetry' ORDER BY seq")]
        assert seqs == list(range(1, len(seqs) + 1))
        record(
            "SIGKILL of the cloud at random moments during ingest (inside transactions among them), then restart",
            runs=KILLS + 1,
            faults=KILLS,
            lost=c["telemetry_appended_total"] - stored - buffered,
            duplicates=stored - distinct,
            note=f"{stored} readings",
        )
    finally:
        stop.set()
        if task is not None:
            await asyncio.wait_for(task, 60)
        cloud.send_signal(signal.SIGTERM)
        await cloud.wait()
        await sim.stop()
