"""Gas detectors on a real pty: garbage, split frames and bad checksums on the line; silence of
one detector; values and counts checked end to end into the gateway's store."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from edge.config import load_station
from edge.runtime import Gateway
from gascore.crypto import generate_signer
from gascore.records import Lane
from gasiot_sim.detector_serial import ASCII_PROTOCOL, Detector, DetectorLine
from support.station import MODELS, write_station
from support.wait import eventually

POINTS = {"concentration": {"field": "conc"}, "fault": {"field": "fault"}, "alarm_level": {"field": "alarm"}}


def station(tmp: Path, tty: str, silence_s: float = 30.0) -> Path:
    data = {
        "gateway": {"id": "gw-det", "cloud_url": "http://127.0.0.1:9", "data_dir": str(tmp / "edge")},
        "models": [str(MODELS)],
        "channels": [
            {
                "id": "rs485",
                "driver": "serial_line",
                "port": tty,
                "baudrate": 9600,
                "protocol": ASCII_PROTOCOL,
                "address_field": "addr",
                "silence_timeout_s": silence_s,
            }
        ],
        "devices": [
            {
                "id": f"det{a}",
                "model": "gas_detector",
                "channel": "rs485",
                "unit_id": a,
                "max_silent_s": 0.001,
                "points": POINTS,
            }
            for a in (1, 2, 3)
        ],
    }
    return write_station(tmp / "station.yaml", data)


async def test_frames_survive_a_noisy_line(tmp_path: Path) -> None:
    master, slave = os.openpty()
    try:
        line = DetectorLine(
            master,
            [Detector(1, 1), Detector(2, 2, leak=True), Detector(3, 3)],
            garbage=True,
            split=True,
            bad_checksum_every=4,
        )
        gateway = Gateway.build(load_station(station(tmp_path, os.ttyname(slave))), signer=generate_signer())
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop, flush_timeout_s=0.1))
        driver = gateway.push_channels[0].driver
        await asyncio.wait_for(driver.port_open.wait(), 10)  # bytes written before the open are flushed
        for _ in range(30):
            line.round()
            await eventually(
                lambda: (
                    driver.parser.stats.frames + driver.parser.stats.checksum_errors >= len(line.sent) + line.corrupted
                ),
                what="the round to be parsed",
            )
        stop.set()
        await task
    finally:
        os.close(master)
        os.close(slave)
    stats = driver.parser.stats
    assert stats.frames == len(line.sent) and stats.checksum_errors == line.corrupted > 0
    assert stats.garbage_bytes > 0
    from edge.store import SqliteStore

    store = SqliteStore(tmp_path / "edge" / "gateway.db")
    rows = store.read_all(Lane.TELEMETRY)
    store.close()
    last = {addr: (conc, alarm) for addr, conc, _fault, alarm in line.sent}
    latest = {(r[0], r[1]): r[3] for r in rows}
    for addr, (conc, alarm) in last.items():
        assert latest[(f"det{addr}", "concentration")] == conc
        assert latest[(f"det{addr}", "alarm_level")] == alarm
    assert latest[("det2", "alarm_level")] == 2  # the leaking one reached the high alarm


async def test_a_silent_detector_goes_offline_alone(tmp_path: Path) -> None:
    master, slave = os.openpty()
    try:
        line = DetectorLine(master, [Detector(1), Detector(2), Detector(3)])
        gateway = Gateway.build(
            load_station(station(tmp_path, os.ttyname(slave), silence_s=0.5)), signer=generate_signer()
        )
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop, flush_timeout_s=0.1))
        await asyncio.wait_for(gateway.push_channels[0].driver.port_open.wait(), 10)
        line.round()
        await eventually(lambda: all(s.online for s in gateway.statuses.values()), what="all online")
        line.silent = {3}

        async def still_talking() -> bool:
            line.round()
            await asyncio.sleep(0.05)  # the detectors' reporting period
            return gateway.statuses["det3"].online is False

        await eventually(still_talking, what="det3 to go offline")
        assert gateway.statuses["det1"].online and gateway.statuses["det2"].online
        line.silent = set()
        line.round()
        await eventually(lambda: gateway.statuses["det3"].online is True, what="det3 back")
        stop.set()
        await task
    finally:
        os.close(master)
        os.close(slave)
