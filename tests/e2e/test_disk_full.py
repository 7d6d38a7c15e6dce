"""The edge daemon's data directory is a small real filesystem (tmpfs) and the cloud is down: the
filesystem fills long before the row bound.  The daemon stays up and keeps polling, drops the
oldest telemetry (counted, each drop reported with its range), keeps every event, and when the
cloud returns everything still buffered arrives exactly once:
readings appended == readings in the cloud + readings dropped and reported."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
from pathlib import Path

import pytest

from gasiot_sim.modbus_server import RegulatorSimServer
from support.cloud import running_cloud
from support.edge_process import edge_counters, edge_events, edge_status, start_edge
from support.gateway import enrolled_station
from support.reliability import record
from support.station import station_dict
from support.tmpfs import fill, free_bytes, small_filesystem
from support.wait import eventually

DISK = "1m"


@pytest.mark.slow
async def test_a_full_disk_drops_oldest_telemetry_keeps_events_and_the_daemon_polling(tmp_path: Path) -> None:
    sims = [RegulatorSimServer(seed=s, tick_s=0.05) for s in (11, 12, 13, 14)]
    ports = [await s.start() for s in sims]
    proc: asyncio.subprocess.Process | None = None
    log = tmp_path / "edge.log"
    try:
        with small_filesystem(tmp_path / "edge", DISK) as disk:
            db_file = tmp_path / "cloud.db"
            async with running_cloud(db_file) as cloud:
                port = cloud.port
                data = station_dict(
                    cloud_url=cloud.url,
                    data_dir=disk,
                    ports=ports,
                    gateway_id="gw-full",
                    poll_interval_s=0.05,
                    store={"max_telemetry_rows": 10_000_000},  # far beyond what 1 MB holds
                    sync={"max_batch_records": 2000},
                )
                data["gateway"]["status_interval_s"] = 1
                for device in data["devices"]:
                    device["max_silent_s"] = 0.01  # every point every poll: the disk fills in seconds
                station_file = tmp_path / "station.yaml"
                station = await enrolled_station(cloud, station_file, data)
            # the cloud is down now: everything stays on the small disk
            edge_db = station.data_dir / "gateway.db"
            proc = await start_edge(station_file, log)

            def alive() -> None:
                assert proc is not None and proc.returncode is None, log.read_text()[-3000:]

            def drops_seen(n: int) -> bool:
                alive()
                return (
                    edge_db.exists()
                    and edge_counters(edge_db).get("telemetry_dropped_total", 0) > 0
                    and (len(edge_events(edge_db, "store.telemetry_dropped")) >= n)
                )

            await eventually(lambda: drops_seen(1), timeout=90, what="the filesystem to fill")
            after_fill = edge_counters(edge_db)
            polls_then = sum(d["polls"] for d in (await edge_status(station_file))["devices"].values())
            await eventually(lambda: drops_seen(4), timeout=90, what="three more fills of the freed room")
            # still polling and committing after the disk filled, one process all along
            later = edge_counters(edge_db)
            assert later["telemetry_appended_total"] > after_fill["telemetry_appended_total"]
            status = await edge_status(station_file)
            assert sum(d["polls"] for d in status["devices"].values()) > polls_then
            assert status["counters"]["telemetry_dropped_total"] > 0
            alive()
            assert free_bytes(disk) > 0
            assert (station.data_dir / "gateway.db.reserve").exists()  # never needed: the budget held

            # A runaway log takes every byte left: the store gives up its reserve and goes on.
            fill(disk / "runaway.log")
            before_log = edge_counters(edge_db)["telemetry_appended_total"]
            await eventually(
                lambda: edge_counters(edge_db)["telemetry_appended_total"] > before_log + 2000,
                timeout=60,
                what="commits beside the runaway log",
            )
            alive()
            assert not (station.data_dir / "gateway.db.reserve").exists()
            (disk / "runaway.log").unlink()

            async with running_cloud(db_file, port) as cloud:  # back, same address, same database
                await eventually(
                    lambda: edge_counters(edge_db)["buffered"] < 3000,
                    timeout=60,
                    what="the backlog to drain",
                )
                assert proc is not None
                proc.send_signal(signal.SIGTERM)  # stops polling, flushes the rest
                assert await asyncio.wait_for(proc.wait(), 60) == 0, log.read_text()[-3000:]
                proc = None
                c = edge_counters(edge_db)
                assert c["buffered"] == 0, "a clean stop with the cloud up flushes everything"
                appended, dropped = c["telemetry_appended_total"], c["telemetry_dropped_total"]
                (stored,) = cloud.rows("SELECT count(*) FROM readings")[0]
                (distinct,) = cloud.rows("SELECT count(*) FROM (SELECT DISTINCT device, point, ts_ms FROM readings)")[0]
                assert appended == stored + dropped, (appended, stored, dropped)
                assert distinct == stored and cloud.ingestor.stats.ignored_records == 0
                # events are never dropped: each one appended at the edge is in the cloud
                assert c.get("events_lost_total", 0) == 0
                assert cloud.rows("SELECT count(*) FROM events")[0][0] == c["events_appended_total"]
                drops = [
                    json.loads(d) for (d,) in cloud.rows("SELECT data FROM events WHERE kind='store.telemetry_dropped'")
                ]
                assert drops and {d["reason"] for d in drops} == {"disk_full"}
                assert sum(d["count"] for d in drops) == dropped
                ranges = sorted((d["first_id"], d["last_id"]) for d in drops)
                for (_, last), (first, _) in itertools.pairwise(ranges):
                    assert first > last  # no row dropped (or counted) twice
                # what survived is the newest: older than the last drop, only the batch that was in
                # flight when the cloud went (kept by the policy) and the cycles beside the drop
                newest_drop = max(d["last_ts_ms"] for d in drops)
                (older,) = cloud.rows("SELECT count(*) FROM readings WHERE ts_ms <= ?", newest_drop)[0]
                assert older <= 2000 + len(sims) * len(station.bindings["dev0"]) * 2
        text = log.read_text()
        assert "Traceback" not in text and "poll cycle failed" not in text, text[-3000:]
        assert text.count("gateway gw-full starting") == 1  # no restart, no crash loop
        record(
            f"disk full: the data directory on a {DISK[:-1]} MB filesystem, cloud down, row bound far above "
            "what fits; then a runaway log takes every free byte; then the cloud returns",
            runs=1,
            faults=len(drops) + 1,
            lost=appended - dropped - stored,
            duplicates=stored - distinct,
            note=f"{appended} readings: {stored} in the cloud, {dropped} dropped by {len(drops)} disk_full drops, "
            "each reported with its range; 0 events lost; the daemon polled throughout",
        )
    finally:
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        for sim in sims:
            await sim.stop()
