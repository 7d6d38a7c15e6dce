"""A device that stops answering never stalls the others; it goes offline once and its points
turn bad/comm_failure once."""

from __future__ import annotations

import asyncio
from pathlib import Path

from edge.config import load_station
from edge.runtime import Gateway
from gascore.crypto import generate_signer
from gascore.records import Lane
from gasiot_sim.modbus_server import RegulatorSimServer
from support.station import REGULATOR_POINTS, station_dict, write_station
from support.wait import eventually


async def test_silent_device_does_not_stall_healthy_one(tmp_path: Path) -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        await reader.read(-1)  # accepts, reads, never answers: every request times out

    blackhole = await asyncio.start_server(swallow, "127.0.0.1", 0)
    dead_port = blackhole.sockets[0].getsockname()[1]
    sim = RegulatorSimServer(seed=9, tick_s=0.05)
    live_port = await sim.start()
    try:
        data = station_dict(
            cloud_url="http://127.0.0.1:9",
            data_dir=tmp_path / "edge",
            ports=[live_port, dead_port],
            poll_interval_s=0.05,
        )
        station = load_station(write_station(tmp_path / "station.yaml", data))
        gateway = Gateway.build(station, signer=generate_signer("ed25519"))
        live, dead = gateway.pollers
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop, flush_timeout_s=0.1))
        # the dead device's first read blocks for its 0.5 s timeout; meanwhile the live one,
        # polled every 0.05 s, keeps its schedule (lenient bound: a loaded CI machine is slow)
        await eventually(lambda: dead.stats.failures >= 1, what="dead device to time out")
        assert live.stats.polls >= 5, live.stats
        await eventually(lambda: dead.stats.failures >= 3, what="dead device to fail again")
        assert live.stats.failures == 0 and live.stats.online is True and dead.stats.online is False
        stop.set()
        await task
    finally:
        await sim.stop()
        blackhole.close()
        for writer in accepted:
            writer.close()
        await blackhole.wait_closed()
    from edge.store import SqliteStore

    store = SqliteStore(station.data_dir / "gateway.db")
    events = store.read_all(Lane.EVENTS)
    telemetry = store.read_all(Lane.TELEMETRY)
    store.close()
    routine = ("device.status", "device.announce")
    assert [e[1] for e in events if e[0] == "dev1" and e[1] not in routine] == ["device_offline"]
    bad = [r for r in telemetry if r[0] == "dev1"]
    assert len(bad) == len(REGULATOR_POINTS) and all(r[4] == "bad/comm_failure" and r[3] is None for r in bad)
