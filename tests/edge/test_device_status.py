"""Device status: counters and latency are kept per device, saved in the store, sent to the
cloud as events, and shown by `gasiot edge status`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from edge.config import load_station
from edge.device_status import DeviceStatus
from edge.runtime import Gateway
from edge.store import SqliteStore
from gascore.crypto import generate_signer
from gascore.records import Lane
from gasiot_sim.modbus_server import RegulatorSimServer
from support.station import station_dict, write_station
from support.wait import eventually


def test_latency_percentiles_and_state_changes() -> None:
    st = DeviceStatus("d")
    for ms in range(1, 101):
        st.record_latency(ms / 1000)
    assert st.percentile(0.5) == 51.0 and st.percentile(0.95) == 96.0
    assert [e.kind for e in st.set_online(True, 1, "ok")] == ["device_online"]
    assert st.set_online(True, 2, "ok") == []
    assert [e.kind for e in st.set_online(False, 3, "timeout")] == ["device_offline"]
    assert st.snapshot()["reason"] == "timeout" and st.snapshot()["since_ms"] == 3


async def test_status_is_saved_sent_and_shown(tmp_path: Path) -> None:
    sim = RegulatorSimServer(seed=4, tick_s=0.05)
    port = await sim.start()
    try:
        data = station_dict(
            cloud_url="http://127.0.0.1:9", data_dir=tmp_path / "edge", ports=[port, 9], poll_interval_s=0.05
        )
        station_file = write_station(tmp_path / "station.yaml", data)
        gateway = Gateway.build(load_station(station_file), signer=generate_signer("ed25519"))
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop, flush_timeout_s=0.1))
        await eventually(
            lambda: gateway.statuses["dev0"].responses >= 5 and gateway.statuses["dev1"].failures >= 1,
            what="polls of both devices",
        )
        stop.set()
        await task  # a clean stop saves the status
    finally:
        await sim.stop()
    store = SqliteStore(load_station(station_file).data_dir / "gateway.db")
    events = [e for e in store.read_all(Lane.EVENTS) if e[1] == "device.status"]
    store.close()
    assert {e[0] for e in events} == {"dev0", "dev1"}
    proc = subprocess.run(
        [sys.executable, "-m", "gasiot", "edge", "status", str(station_file), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    devices = json.loads(proc.stdout)["devices"]
    assert devices["dev0"]["online"] is True and devices["dev0"]["responses"] >= 5
    assert devices["dev0"]["latency_p50_ms"] is not None and devices["dev0"]["last_good_ms"] is not None
    assert devices["dev1"]["online"] is False and "cannot connect" in devices["dev1"]["reason"]
    table = subprocess.run(
        [sys.executable, "-m", "gasiot", "edge", "status", str(station_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "COLUMNS": "160"},
    )
    assert "dev0" in table.stdout and "online" in table.stdout and "offline" in table.stdout
