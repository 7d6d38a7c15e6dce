"""The gateway's links through a fault proxy: to the cloud with latency and a bandwidth cap,
connections cut in the middle of a batch, half-open connections that never answer; to the device
with cuts.  Everything committed at the edge reaches the cloud exactly once, the gateway never
stops polling, and the device link recovers by itself."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edge.runtime import Gateway
from edge.store import SqliteStore
from gascore.records import Lane
from gasiot_sim.modbus_server import RegulatorSimServer
from support.cloud import running_cloud
from support.faultproxy import FaultProxy
from support.gateway import enrolled_station
from support.reliability import record
from support.station import station_dict
from support.wait import eventually


@pytest.mark.slow
async def test_sync_and_polling_through_a_bad_network(tmp_path: Path) -> None:
    sim = RegulatorSimServer(seed=2, tick_s=0.05)
    sim_port = await sim.start()
    # every device connection is cut after ~30 polls; the driver reconnects by itself each time
    device_link = FaultProxy("127.0.0.1", sim_port, cut_after_bytes=2000, seed=3)
    device_port = await device_link.start()
    try:
        async with running_cloud(tmp_path / "cloud.db") as cloud:
            cloud_link = FaultProxy("127.0.0.1", cloud.port, latency_s=0.02, bytes_per_s=200_000, seed=5)
            cloud_port = await cloud_link.start()
            data = station_dict(
                cloud_url=f"http://127.0.0.1:{cloud_port}",
                data_dir=tmp_path / "edge",
                ports=[device_port],
                gateway_id="gw-net",
                poll_interval_s=0.05,
                sync={"max_batch_records": 50, "max_batch_age_s": 0.05, "timeout_s": 2, "backoff_max_s": 0.3},
            )
            data["channels"][0]["timeout_s"] = 0.3
            station = await enrolled_station(cloud, tmp_path / "station.yaml", data)
            gateway = Gateway.build(station)
            stop = asyncio.Event()
            task = asyncio.create_task(gateway.run(stop, flush_timeout_s=20))
            assert gateway.sync is not None

            def stored() -> int:
                return int(cloud.rows("SELECT count(*) FROM readings")[0][0])

            await eventually(lambda: stored() > 50, timeout=60, what="data through a slow link")
            # phase 2: every connection to the cloud cut in the middle of the batch body ...
            cloud_link.cut_after_bytes, cloud_link.cut_share = 600, 1.0
            cloud_link.reset()
            await eventually(lambda: cloud_link.cuts >= 3, timeout=60, what="cut connections")
            cloud_link.cut_after_bytes = None  # ... then the link heals: the data follows
            before = stored()
            await eventually(lambda: stored() > before + 50, timeout=60, what="data after the cuts")
            # phase 3: connections accepted and never answered (the edge's timeout must free it)
            cloud_link.half_open_share = 1.0
            cloud_link.reset()
            await eventually(lambda: cloud_link.half_open >= 2, timeout=60, what="half-open connections")
            cloud_link.half_open_share = 0.0
            before = stored()
            await eventually(lambda: stored() > before + 50, timeout=60, what="data after the half-open link")
            stop.set()
            await asyncio.wait_for(task, 60)
            await cloud_link.stop()
            edge = SqliteStore(station.data_dir / "gateway.db")
            c, buffered = edge.counters(), edge.buffered(Lane.TELEMETRY)
            edge.close()
            total = stored()
            (distinct,) = cloud.rows("SELECT count(*) FROM (SELECT DISTINCT device, point, ts_ms FROM readings)")[0]
            assert total + buffered == c["telemetry_appended_total"]
            assert distinct == total
            assert device_link.cuts > 0  # the device link was cut too ...
            online = cloud.rows("SELECT count(*) FROM events WHERE kind = 'device_online'")[0][0]
            assert online >= 1  # ... and the device came back by itself each time
            record(
                "network between edge and cloud: 20 ms latency, 200 kB/s cap, connections cut mid-body, "
                "half-open connections; edge-to-device connections cut",
                runs=1,
                faults=cloud_link.cuts + cloud_link.half_open + device_link.cuts,
                lost=c["telemetry_appended_total"] - total - buffered,
                duplicates=total - distinct,
                note=f"{total} readings; {cloud_link.cuts} cloud cuts, {cloud_link.half_open} half-open, "
                f"{device_link.cuts} device cuts",
            )
    finally:
        await device_link.stop()
        await sim.stop()
