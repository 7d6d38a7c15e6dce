"""A gate station's SCADA over OPC-UA, end to end into the gateway: subscribed and polled points,
the SCADA restarting under the gateway, and values equal to what the SCADA served."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edge.config import load_station
from edge.runtime import Gateway
from gascore.crypto import generate_signer
from gascore.records import Lane
from gasiot_sim.scada_opcua import ScadaSimServer
from support.station import MODELS, write_station
from support.wait import eventually


async def test_scada_values_flow_and_survive_a_server_restart(tmp_path: Path) -> None:
    sim = ScadaSimServer(seed=2, tick_s=0.1)
    await sim.start()
    try:
        points = {
            "inlet_pressure": {"node": sim.node_id("Inlet.Pressure"), "sampling_interval_ms": 50},
            "temperature": {"node": sim.node_id("Inlet.Temperature"), "sampling_interval_ms": 50},
            "volume": {"node": sim.node_id("Metering.Volume"), "mode": "poll"},
            "inlet_valve_open": {"node": sim.node_id("Valves.InletOpen")},
        }
        data = {
            "gateway": {"id": "gw-gs", "cloud_url": "http://127.0.0.1:9", "data_dir": str(tmp_path / "edge")},
            "models": [str(MODELS)],
            "channels": [
                {
                    "id": "scada",
                    "driver": "opcua",
                    "endpoint": sim.endpoint,
                    "timeout_s": 1.0,
                    "reconnect_initial_s": 0.1,
                    "reconnect_max_s": 0.5,
                }
            ],
            "devices": [
                {"id": "GS01", "model": "gate_station", "channel": "scada", "poll_interval_s": 0.2, "points": points}
            ],
        }
        gateway = Gateway.build(load_station(write_station(tmp_path / "station.yaml", data)), signer=generate_signer())
        status = gateway.statuses["GS01"]
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop, flush_timeout_s=0.1))

        def have(point: str) -> bool:
            return any(r[1] == point and r[4] == "good" for r in gateway.store.read_all(Lane.TELEMETRY))

        await eventually(lambda: all(have(p) for p in points), what="every point, subscribed and polled")
        await sim.restart(down_s=0.5)
        await eventually(lambda: status.online is False, what="the gateway to notice the restart")
        await eventually(lambda: status.online is True, timeout=30, what="subscriptions re-created")
        sim_after = sim.snapshot()
        await eventually(
            lambda: any(
                r[1] == "inlet_pressure" and r[3] == pytest.approx(sim_after["Inlet.Pressure"], abs=0.05)
                for r in gateway.store.read_all(Lane.TELEMETRY)
            ),
            what="values after the restart",
        )
        stop.set()
        await task
    finally:
        await sim.close()
    kinds = [e[1] for e in _events(tmp_path) if e[0] == "GS01" and e[1].startswith("device_o")]
    assert kinds[:3] == ["device_online", "device_offline", "device_online"]


def _events(tmp: Path) -> list[list[object]]:
    from edge.store import SqliteStore

    store = SqliteStore(tmp / "edge" / "gateway.db")
    try:
        return store.read_all(Lane.EVENTS)
    finally:
        store.close()
