"""Pages in the middle of the live store file are overwritten under a running edge daemon (a bad
sector, a card that loses a write).  The daemon finds the damage while running, moves the file
aside (kept), goes on in a fresh one with a CRITICAL event saying what was unsent, keeps
polling, and the sync lanes continue the cloud's sequence: the event and every later reading
reach the cloud, none twice."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
from pathlib import Path

import pytest

from gasiot_sim.modbus_server import RegulatorSimServer
from support.cloud import running_cloud
from support.edge_process import edge_counters, start_edge
from support.gateway import enrolled_station
from support.reliability import record
from support.station import station_dict
from support.wait import eventually


@pytest.mark.slow
async def test_damage_found_while_running_is_set_aside_and_the_daemon_goes_on(tmp_path: Path) -> None:
    sims = [RegulatorSimServer(seed=s, tick_s=0.05) for s in (21, 22)]
    ports = [await s.start() for s in sims]
    proc: asyncio.subprocess.Process | None = None
    log = tmp_path / "edge.log"
    db_file = tmp_path / "cloud.db"
    try:
        async with running_cloud(db_file) as cloud:
            port = cloud.port
            data = station_dict(
                cloud_url=cloud.url,
                data_dir=tmp_path / "edge",
                ports=ports,
                gateway_id="gw-damage",
                poll_interval_s=0.05,
                store={"integrity_check_s": 0.5},
                sync={"max_batch_records": 200},
            )
            for device in data["devices"]:
                device["max_silent_s"] = 0.01  # every point every poll
            station_file = tmp_path / "station.yaml"
            station = await enrolled_station(cloud, station_file, data)
            edge_db = station.data_dir / "gateway.db"
            proc = await start_edge(station_file, log)

            def alive() -> None:
                assert proc is not None and proc.returncode is None, log.read_text()[-3000:]

            def cloud_readings() -> int:
                alive()
                return int(cloud.rows("SELECT count(*) FROM readings")[0][0])

            await eventually(lambda: cloud_readings() > 500, timeout=30, what="sync before the damage")

        # The cloud is gone: a backlog builds up that only the store holds.
        await eventually(lambda: edge_counters(edge_db)["buffered"] > 4000, timeout=60, what="a backlog")
        # Fold the WAL into the main file (the daemon does so itself every 1000 pages), so that
        # the backlog's pages live there and nowhere else; then damage the middle third of them.
        with contextlib.closing(sqlite3.connect(edge_db, timeout=10)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        before = edge_counters(edge_db)
        pages = edge_db.stat().st_size // 4096
        with edge_db.open("r+b") as f:
            for page in range(pages // 3, 2 * pages // 3):
                f.seek(page * 4096)
                f.write(b"\xde\xad\xbe\xef" * 1024)

        def set_aside() -> list[Path]:
            alive()
            return sorted(p for p in station.data_dir.glob("gateway.db.corrupt-*") if p.suffix != ".db-wal")

        await eventually(lambda: bool(set_aside()), timeout=30, what="the damaged file to be set aside")
        (moved, *_) = set_aside()
        assert moved.stat().st_size > 0  # kept, not deleted
        # still polling, into the fresh file
        await eventually(lambda: edge_counters(edge_db)["buffered"] > 200, timeout=30, what="polls after the damage")
        alive()

        async with running_cloud(db_file, port) as cloud:  # back, same address, same database

            def events(kind: str) -> list[dict[str, object]]:
                rows = cloud.rows("SELECT data FROM events WHERE gateway_id='gw-damage' AND kind=?", kind)
                return [json.loads(d) for (d,) in rows]

            await eventually(lambda: bool(events("store.database_set_aside")), timeout=60, what="the event")
            (event,) = events("store.database_set_aside")
            assert event["found"] == "while running" and event["file"] == moved.name
            assert int(str(event["unsent_telemetry"])) >= before["buffered"]
            # later readings arrive: the lane went on from the cloud's sequence
            resumed = cloud_readings()
            await eventually(lambda: cloud_readings() > resumed + 500, timeout=60, what="readings after the damage")
            assert proc is not None
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 60) == 0, log.read_text()[-3000:]
            proc = None
            c = edge_counters(edge_db)
            assert c["buffered"] == 0
            (stored,) = cloud.rows("SELECT count(*) FROM readings")[0]
            (distinct,) = cloud.rows("SELECT count(*) FROM (SELECT DISTINCT device, point, ts_ms FROM readings)")[0]
            assert distinct == stored and cloud.ingestor.stats.ignored_records == 0
            set_aside_rows = c["telemetry_set_aside_total"]
            assert set_aside_rows == event["unsent_telemetry"]
            # every reading is in the cloud or in the set-aside file, counted
            assert c["telemetry_appended_total"] == stored + set_aside_rows + c.get("telemetry_dropped_total", 0)
            assert cloud.rows("SELECT count(*) FROM events WHERE gateway_id='gw-damage'")[0][0] == (
                c["events_appended_total"] - c["events_set_aside_total"]
            )
            seqs = [
                s
                for (s,) in cloud.rows(
                    "SELECT seq FROM batches WHERE gateway_id='gw-damage' AND lane='telemetry' ORDER BY seq"
                )
            ]
            assert seqs == list(range(1, len(seqs) + 1))  # no gap, no restart at 1
            assert events("sync.rewound"), "the fresh file's lanes took the cloud's sequence"
        text = log.read_text()
        assert "Traceback" not in text, text[-3000:]
        assert text.count("gateway gw-damage starting") == 1  # one process throughout
        record(
            "pages in the middle of the live store file overwritten under the running daemon (cloud down), "
            "then the cloud returns",
            runs=1,
            faults=1,
            lost=c["telemetry_appended_total"] - stored - set_aside_rows,
            duplicates=stored - distinct,
            note=f"found by the running daemon and set aside (kept) with {set_aside_rows} unsent readings in it; "
            f"{stored} readings in the cloud, the lanes continued the cloud's sequence",
        )
    finally:
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        for sim in sims:
            await sim.stop()
