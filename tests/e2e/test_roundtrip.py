"""Simulator → edge → cloud over real sockets: what the cloud stores equals what the simulator
served, for every data type and byte/word order."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edge.runtime import Gateway
from gasiot_sim.modbus_server import RegulatorSimServer
from gasiot_sim.test_pattern import TEST_PATTERN
from support.cloud import running_cloud
from support.gateway import enrolled_station
from support.station import FIXTURE_MODELS, MODELS, REGULATOR_POINTS
from support.wait import eventually


def pattern_points() -> dict[str, dict[str, object]]:
    points: dict[str, dict[str, object]] = {}
    for key, p in TEST_PATTERN.items():
        binding: dict[str, object] = {
            "table": "input",
            "address": p.address,
            "type": p.type,
            "byte_order": p.byte_order,
            "word_order": p.word_order,
        }
        if p.bit is not None:
            binding["bit"] = p.bit
        points[key] = binding
    return points


@pytest.mark.parametrize("codec", ["cbor+zstd", "json+zstd", "json"])
async def test_cloud_holds_exactly_what_the_simulator_served(tmp_path: Path, codec: str) -> None:
    sim = RegulatorSimServer(seed=3, tick_s=3600)  # physics frozen: served values stay put
    port = await sim.start()
    try:
        async with running_cloud(tmp_path / "cloud.db") as cloud:
            data = {
                "gateway": {"id": "gw-rt", "cloud_url": cloud.url, "data_dir": str(tmp_path / "edge")},
                "models": [str(MODELS), str(FIXTURE_MODELS)],
                "sync": {"codec": codec, "max_batch_age_s": 0.1},
                "channels": [{"id": "link", "driver": "modbus_tcp", "host": "127.0.0.1", "port": port}],
                "devices": [
                    {
                        "id": "pattern",
                        "model": "test_pattern",
                        "channel": "link",
                        "poll_interval_s": 0.1,
                        "points": pattern_points(),
                    },
                    {
                        "id": "box",
                        "model": "regulator_box",
                        "channel": "link",
                        "poll_interval_s": 0.1,
                        "points": REGULATOR_POINTS,
                    },
                ],
            }
            station = await enrolled_station(cloud, tmp_path / "station.yaml", data)
            gateway = Gateway.build(station)
            stop = asyncio.Event()
            task = asyncio.create_task(gateway.run(stop))
            expected_points = len(TEST_PATTERN) + len(REGULATOR_POINTS)
            await eventually(
                lambda: len(cloud.repo.latest("gw-rt", None)) == expected_points,
                what="every point in the cloud",
            )
            stop.set()
            await task

            latest = {(r["device"], r["point"]): r for r in cloud.repo.latest("gw-rt", None)}
            for key, p in TEST_PATTERN.items():
                row = latest[("pattern", key)]
                assert row["quality"] == "good", key
                assert row["value"] == p.value and type(row["value"]) is type(p.value), (key, row, p)
            served = sim.snapshot()
            assert latest[("box", "emergency_close")]["value"] is False  # a command coil: always reads 0
            for key in REGULATOR_POINTS:
                if key == "emergency_close":
                    continue
                row = latest[("box", key)]
                want = served[key]
                want_value = getattr(want, "value", want)
                if isinstance(want_value, float):
                    assert row["value"] == pytest.approx(want_value, abs=1e-6), key
                else:
                    assert row["value"] == want_value, key
            events = cloud.repo.events("gw-rt", None, 0, 2**62, 100)
            assert {("pattern", "device_online"), ("box", "device_online")} <= {
                (e["device"], e["kind"]) for e in events
            }
    finally:
        await sim.stop()
