"""A silent slave on a shared RS-485 bus: the gateway backs it off on its own (probing it at a
slower rate) and the other units on the line keep their poll rate; the port is never reopened
for a unit's silence.  Counts, not wall time."""

from __future__ import annotations

import asyncio
from pathlib import Path

from peers._require import require_tool

from edge.config import load_station
from edge.runtime import Gateway
from gascore.crypto import generate_signer
from gasiot_sim.pty_pair import PtyPair
from gasiot_sim.rtu_bus import RtuBusSim
from support.station import MODELS, REGULATOR_POINTS, write_station
from support.wait import eventually

INTERVAL = 0.05
TIMEOUT = 0.2


async def test_silent_slave_is_probed_slowly_and_costs_the_others_little(tmp_path: Path) -> None:
    require_tool("socat")
    async with PtyPair(tmp_path) as pty:
        sim = RtuBusSim(units={1: 1, 2: 2, 3: 3}, tick_s=3600)
        await sim.start(pty.a)
        try:
            data = {
                "gateway": {"id": "gw-rtu", "cloud_url": "http://127.0.0.1:9", "data_dir": str(tmp_path / "edge")},
                "models": [str(MODELS)],
                "channels": [
                    {"id": "bus", "driver": "modbus_rtu", "port": pty.b, "baudrate": 19200, "timeout_s": TIMEOUT}
                ],
                "devices": [
                    {
                        "id": f"box{u}",
                        "model": "regulator_box",
                        "channel": "bus",
                        "unit_id": u,
                        "poll_interval_s": INTERVAL,
                        "points": REGULATOR_POINTS,
                    }
                    for u in (1, 2, 3)
                ],
            }
            gateway = Gateway.build(
                load_station(write_station(tmp_path / "station.yaml", data)), signer=generate_signer()
            )
            driver = gateway.channels["bus"].driver
            stop = asyncio.Event()
            task = asyncio.create_task(gateway.run(stop, flush_timeout_s=0.1))
            await eventually(lambda: all(s.online for s in gateway.statuses.values()), what="all units online")
            sim.set_silent(3, True)
            box1, box2, box3 = (gateway.statuses[f"box{u}"] for u in (1, 2, 3))
            before = box1.responses
            await eventually(lambda: box1.responses >= before + 60, timeout=30, what="60 more polls of unit 1")
            stop.set()
            await task
        finally:
            await sim.stop()
    probes = driver.statistics.unit(3).timeouts
    # unit 3 was probed with backoff (0.5 s, 1 s, 2 s ...), not on every 50 ms slot
    assert 1 <= probes <= 8, probes
    # each probe costs the line one timeout; the healthy units lost at most that, never failed
    assert box1.failures == box2.failures == 0
    assert box2.responses >= box1.responses - 2
    assert box3.online is False and box1.online and box2.online
    assert driver.statistics.connects == 1  # the port was never reopened for a silent unit
