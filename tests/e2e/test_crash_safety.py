"""`kill -9` the edge at random moments while it polls and syncs, restart it, repeat; afterwards
the cloud holds every reading the edge committed, exactly once, in order."""

from __future__ import annotations

import asyncio
import os
import random
import signal
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from gasiot_sim.modbus_server import RegulatorSimServer
from support.cloud import running_cloud
from support.edge_process import edge_counters, start_edge
from support.gateway import enrolled_station
from support.http import serve_batches
from support.reliability import record
from support.station import station_dict
from support.wait import eventually

KILLS = int(os.environ.get("GASIOT_CHAOS_KILLS", "20"))  # scripts/chaos/reliability.py runs 200


async def holding_proxy(cloud_url: str) -> tuple[web.AppRunner, str, asyncio.Event, asyncio.Event]:
    """Forwards batches to the cloud; while ``hold`` is set it keeps the cloud's ack to itself
    (the batch is stored, the edge never hears so) and sets ``held``."""
    hold, held = asyncio.Event(), asyncio.Event()

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        async with aiohttp.ClientSession() as http, http.post(f"{cloud_url}/v1/batches", data=body) as r:
            reply, status = await r.read(), r.status
        if hold.is_set() and status == 200:
            held.set()
            while hold.is_set():  # keep the ack until the test has killed the edge
                await asyncio.sleep(0.01)
            raise web.HTTPServiceUnavailable(text="ack withheld")  # to a connection nobody reads any more
        return web.Response(body=reply, status=status, content_type="application/json")

    runner, url = await serve_batches(forward)
    return runner, url, hold, held


@pytest.mark.slow
async def test_sigkill_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("GASIOT_TEST_SEED", "20261126")))
    sims = [RegulatorSimServer(seed=s, tick_s=0.05) for s in (1, 2)]
    ports = [await s.start() for s in sims]
    try:
        async with running_cloud(tmp_path / "cloud.db") as cloud:
            proxy, proxy_url, hold, held = await holding_proxy(cloud.url)
            data = station_dict(
                cloud_url=proxy_url,
                data_dir=tmp_path / "edge",
                ports=ports,
                gateway_id="gw-crash",
                poll_interval_s=0.05,
                sync={"max_batch_records": 40, "max_batch_age_s": 0.05},
            )
            station = await enrolled_station(cloud, tmp_path / "station.yaml", data)
            db = station.data_dir / "gateway.db"
            log = tmp_path / "edge.log"

            def cloud_count() -> int:
                return int(cloud.rows("SELECT count(*) FROM readings")[0][0])

            for _ in range(KILLS):
                before = cloud_count()
                proc = await start_edge(tmp_path / "station.yaml", log)
                # let it make progress (something new reaches the cloud), then kill at a random moment
                await eventually(lambda b=before: cloud_count() > b, timeout=30, what="sync progress")
                await asyncio.sleep(rng.uniform(0.0, 0.4))  # the kill moment, not a synchronisation
                proc.send_signal(signal.SIGKILL)
                assert await proc.wait() == -signal.SIGKILL

            # The worst moment: the cloud has stored a batch, the ack is on its way, the edge dies.
            hold.set()
            proc = await start_edge(tmp_path / "station.yaml", log)
            await asyncio.wait_for(held.wait(), 30)
            proc.send_signal(signal.SIGKILL)
            assert await proc.wait() == -signal.SIGKILL
            hold.clear()

            # Final run: stop cleanly; SIGTERM stops polling and flushes the buffer.
            proc = await start_edge(tmp_path / "station.yaml", log)
            before = cloud_count()
            await eventually(lambda: cloud_count() > before, timeout=30, what="sync progress")
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 30) == 0, log.read_text()

            counters = edge_counters(db)
            committed = counters["telemetry_appended_total"]
            assert counters["buffered"] == 0, "clean stop should have flushed everything"
            assert counters.get("telemetry_dropped_total", 0) == 0
            stored = cloud_count()
            assert stored == committed, f"cloud {stored} != committed at edge {committed}"
            (distinct,) = cloud.rows("SELECT count(*) FROM (SELECT DISTINCT device, point, ts_ms FROM readings)")[0]
            assert distinct == stored, "duplicates in the cloud"
            # and the edge never sent a record twice (the cloud would have ignored the repeat)
            assert cloud.ingestor.stats.ignored_records == 0
            # in order: per point, timestamps strictly increase in storage order
            rows = cloud.rows("SELECT device, point, ts_ms FROM readings ORDER BY rowid")
            last: dict[tuple[str, str], int] = {}
            for device, point, ts in rows:
                assert ts > last.get((device, point), -1), (device, point, ts)
                last[(device, point)] = ts
            seqs = [
                s
                for (s,) in cloud.rows(
                    "SELECT seq FROM batches WHERE gateway_id='gw-crash' AND lane='telemetry' ORDER BY seq"
                )
            ]
            assert seqs == list(range(1, len(seqs) + 1))
            assert cloud.ingestor.stats.duplicates >= 1  # the held batch was resent and recognised
            await proxy.cleanup()
            online = cloud.rows("SELECT count(*) FROM events WHERE kind='device_online'")[0][0]
            assert online >= 2 * (KILLS + 1) - 2  # each start reports its devices online (last kill may race)
            record(
                "SIGKILL of the edge at random moments during poll, append, batch, upload and ack (plus one "
                "with the cloud's ack in flight), then restart",
                runs=KILLS + 2,
                faults=KILLS + 1,
                lost=committed - stored,
                duplicates=stored - distinct,
                note=f"{stored} readings",
            )
    finally:
        for sim in sims:
            await sim.stop()
