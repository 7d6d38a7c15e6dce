"""The cloud goes away while the edge keeps polling; when it returns everything arrives.  With the
disk bound reached, the drop policy holds (oldest telemetry, never events) and the loss is
reported to the cloud."""

from __future__ import annotations

import asyncio
from pathlib import Path

from edge.runtime import Gateway
from gasiot_sim.modbus_server import RegulatorSimServer
from support.cloud import running_cloud
from support.gateway import enrolled_station
from support.reliability import record
from support.station import station_dict
from support.wait import eventually


async def run_outage(tmp_path: Path, *, bound: int | None) -> None:
    sims = [RegulatorSimServer(seed=s, tick_s=0.05) for s in (5, 6)]
    ports = [await s.start() for s in sims]
    db = tmp_path / "cloud.db"
    try:
        async with running_cloud(db) as cloud:
            port = cloud.port
            data = station_dict(
                cloud_url=cloud.url,
                data_dir=tmp_path / "edge",
                ports=ports,
                gateway_id="gw-out",
                poll_interval_s=0.05,
                store={"max_telemetry_rows": bound} if bound else None,
            )
            station = await enrolled_station(cloud, tmp_path / "station.yaml", data)
        # the cloud is down now
        gateway = Gateway.build(station)
        store = gateway.store
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        target = 3 * bound if bound else 400
        await eventually(
            lambda: store.counters().get("telemetry_appended_total", 0) >= target,
            what="readings buffered during the outage",
        )
        assert gateway.sync is not None and gateway.sync.stats.failures > 0
        assert store.counters().get("telemetry_acked_total", 0) == 0
        if bound:
            assert store.counters()["readings_rows"] <= bound

        async with running_cloud(db, port) as cloud:  # back, same address, same database

            def delivered() -> bool:
                c = store.counters()
                return (
                    c.get("telemetry_appended_total", 0) - c.get("telemetry_dropped_total", 0)
                    == cloud.rows("SELECT count(*) FROM readings")[0][0]
                )

            await eventually(delivered, timeout=30, what="backlog delivered after the outage")
            stop.set()
            await task
            from edge.store import SqliteStore

            edge = SqliteStore(station.data_dir / "gateway.db")
            c = edge.counters()
            edge.close()
            stored = cloud.rows("SELECT count(*) FROM readings")[0][0]
            assert stored == c["telemetry_appended_total"] - c.get("telemetry_dropped_total", 0)
            # events are never dropped: every one appended at the edge is in the cloud
            assert cloud.rows("SELECT count(*) FROM events")[0][0] == c["events_appended_total"]
            (distinct,) = cloud.rows("SELECT count(*) FROM (SELECT DISTINCT device, point, ts_ms FROM readings)")[0]
            assert distinct == stored
            # and the edge never sent a record twice (the cloud would have ignored the repeat)
            assert cloud.ingestor.stats.ignored_records == 0
            drops = cloud.rows("SELECT data FROM events WHERE kind='store.telemetry_dropped'")
            if bound:
                import json

                assert c["telemetry_dropped_total"] > 0
                assert sum(json.loads(d)["count"] for (d,) in drops) == c["telemetry_dropped_total"]
                # drops go down to a low-water mark (90 % of the bound): a handful of drop events,
                # not one per poll cycle
                assert len(drops) <= c["telemetry_appended_total"] // (bound // 10) + 1
                # what survived is the newest: every reading after the last dropped one arrived
                last_dropped = max(json.loads(d)["last_ts_ms"] for (d,) in drops)
                newer = cloud.rows("SELECT count(*) FROM readings WHERE ts_ms > ?", last_dropped)[0][0]
                assert newer >= bound * 9 // 10 - len(station.config.devices) * 10
            else:
                assert drops == []
                assert c.get("telemetry_dropped_total", 0) == 0
            dropped = c.get("telemetry_dropped_total", 0)
            record(
                "cloud unreachable, then back"
                + (f" (store bound {bound} rows: oldest dropped, counted, reported)" if bound else ""),
                runs=1,
                faults=1,
                lost=c["telemetry_appended_total"] - dropped - stored,
                duplicates=stored - distinct,
                note=f"{stored} readings stored, {dropped} dropped by the bound and reported",
            )
    finally:
        for sim in sims:
            await sim.stop()


async def test_outage_then_everything_arrives(tmp_path: Path) -> None:
    await run_outage(tmp_path, bound=None)


async def test_outage_with_disk_bound_drops_oldest_and_reports_it(tmp_path: Path) -> None:
    await run_outage(tmp_path, bound=200)
