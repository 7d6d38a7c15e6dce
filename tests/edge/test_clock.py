"""The gateway's clock never runs backwards: a step back of the system clock is slewed away at
half speed (timestamps stay increasing and unique, and end up on the corrected time); steps
forward are followed at once.  End to end: a gateway whose system clock steps back an hour
loses no reading in the cloud."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import pytest

from edge.clock import SlewingClock

S = 1_000_000_000  # ns


class Fake:
    def __init__(self) -> None:
        self.wall = 1_700_000_000 * S
        self.mono = 0

    def advance(self, seconds: float, *, wall_step: float = 0.0) -> None:
        self.mono += int(seconds * S)
        self.wall += int((seconds + wall_step) * S)


def test_steps_back_are_slewed_and_forward_followed() -> None:
    fake = Fake()
    clock = SlewingClock(lambda: fake.wall, lambda: fake.mono)
    t0 = clock.now_ms()
    fake.advance(10)
    assert clock.now_ms() == t0 + 10_000
    fake.advance(1, wall_step=-3600)  # the system clock is set back an hour
    stamps = []
    for _ in range(8000):  # two hours and a bit, one reading a second
        stamps.append(clock.now_ms())
        fake.advance(1)
    assert all(b > a for a, b in itertools.pairwise(stamps))  # never back, never repeated
    assert clock.steps_back == 1 and clock.largest_step_back_ms == 3_599_000
    assert clock.now_ms() == fake.wall // 1_000_000  # met the corrected time after ~2 h
    fake.advance(1, wall_step=600)  # forward steps are followed at once
    assert clock.now_ms() == fake.wall // 1_000_000


@pytest.mark.slow
async def test_a_gateway_whose_clock_steps_back_loses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edge import clock as clock_module
    from edge.runtime import Gateway
    from edge.store import SqliteStore
    from gascore.records import Lane
    from gasiot_sim.modbus_server import RegulatorSimServer
    from support.cloud import running_cloud
    from support.gateway import enrolled_station
    from support.reliability import record
    from support.station import station_dict
    from support.wait import eventually

    offset = [0]
    clock = SlewingClock(lambda: time.time_ns() + offset[0], time.monotonic_ns)
    monkeypatch.setattr(clock_module, "CLOCK", clock)
    monkeypatch.setattr("edge.poller.CLOCK", clock)
    sim = RegulatorSimServer(seed=4, tick_s=0.02)  # values change all the time: every poll is reported
    port = await sim.start()
    try:
        async with running_cloud(tmp_path / "cloud.db") as cloud:
            data = station_dict(
                cloud_url=cloud.url,
                data_dir=tmp_path / "edge",
                ports=[port],
                gateway_id="gw-clk",
                poll_interval_s=0.05,
                sync={"max_batch_age_s": 0.05},
            )
            station = await enrolled_station(cloud, tmp_path / "station.yaml", data)
            gateway = Gateway.build(station)
            stop = asyncio.Event()
            task = asyncio.create_task(gateway.run(stop, flush_timeout_s=10))

            def stored() -> int:
                return int(cloud.rows("SELECT count(*) FROM readings")[0][0])

            await eventually(lambda: stored() > 50, what="readings before the step")
            offset[0] = -3600 * S  # the system clock steps back an hour
            before = stored()
            await eventually(lambda: stored() > before + 100, what="readings after the step")
            stop.set()
            await task
            edge = SqliteStore(station.data_dir / "gateway.db")
            c, buffered = edge.counters(), edge.buffered(Lane.TELEMETRY)
            edge.close()
            total = stored()
            assert clock.steps_back == 1
            assert total + buffered == c["telemetry_appended_total"]
            assert cloud.ingestor.stats.ignored_records == 0  # no reading taken for a duplicate
            rows = cloud.rows("SELECT device, point, ts_ms FROM readings ORDER BY rowid")
            last: dict[tuple[str, str], int] = {}
            for device, point, ts in rows:
                assert ts > last.get((device, point), -1)
                last[(device, point)] = ts
            record(
                "the gateway's system clock steps back one hour while it polls and syncs",
                runs=1,
                faults=1,
                lost=c["telemetry_appended_total"] - total - buffered,
                duplicates=cloud.ingestor.stats.ignored_records,
                note=f"{total} readings, timestamps increasing per point",
            )
    finally:
        await sim.stop()
