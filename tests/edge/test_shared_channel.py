"""Several unit ids behind one Modbus TCP gateway: a unit that never answers times out and backs
off on its own; its neighbours on the same connection keep being polled."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

from edge.config import load_station
from edge.runtime import Gateway
from gascore.crypto import generate_signer
from support.station import station_dict, write_station
from support.wait import eventually

SILENT_UNIT = 7


async def gateway_server() -> tuple[asyncio.Server, list[asyncio.StreamWriter]]:
    """A minimal Modbus TCP gateway (independent of pymodbus): function 3 answers with register
    value = address for every unit except SILENT_UNIT, which never answers."""
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        try:
            while True:
                header = await reader.readexactly(7)
                tid, _pid, length, unit = struct.unpack(">HHHB", header)
                pdu = await reader.readexactly(length - 1)
                if unit == SILENT_UNIT:
                    continue
                function, address, count = struct.unpack(">BHH", pdu[:5])
                data = b"".join(struct.pack(">H", (address + i) & 0xFFFF) for i in range(count))
                body = struct.pack(">BBB", unit, function, len(data)) + data
                writer.write(struct.pack(">HHH", tid, 0, len(body)) + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, writers


async def test_a_silent_unit_does_not_take_its_neighbours_offline(tmp_path: Path) -> None:
    server, writers = await gateway_server()
    port = server.sockets[0].getsockname()[1]
    points = {"outlet_pressure": {"table": "holding", "address": 2, "type": "uint16", "scale": 0.001}}
    data = station_dict(
        cloud_url="http://127.0.0.1:9", data_dir=tmp_path / "edge", ports=[port], poll_interval_s=0.05, points=points
    )
    data["devices"] = [
        {
            "id": "good",
            "model": "regulator_box",
            "channel": "link0",
            "unit_id": 1,
            "poll_interval_s": 0.05,
            "points": points,
        },
        {
            "id": "silent",
            "model": "regulator_box",
            "channel": "link0",
            "unit_id": SILENT_UNIT,
            "poll_interval_s": 0.05,
            "points": points,
        },
    ]
    data["channels"][0]["timeout_s"] = 0.3
    station = load_station(write_station(tmp_path / "station.yaml", data))
    gateway = Gateway.build(station, signer=generate_signer("ed25519"))
    good, silent = gateway.pollers
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop, flush_timeout_s=0.1))
    try:
        await eventually(lambda: silent.stats.failures >= 3, what="the silent unit to fail repeatedly")
        failures_of_good = good.stats.failures
        polls_of_good = good.stats.polls
        await eventually(lambda: good.stats.polls >= polls_of_good + 10, what="the good unit to keep polling")
        # at most the polls that were queued behind one of the silent unit's timeouts may fail
        assert good.stats.online is True and silent.stats.online is False
        assert good.stats.failures == failures_of_good == 0
    finally:
        stop.set()
        await task
        server.close()
        for w in writers:
            w.close()
        await server.wait_closed()
