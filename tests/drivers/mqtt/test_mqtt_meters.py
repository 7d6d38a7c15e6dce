"""Smart meters → mosquitto (a real broker) → the gateway's MQTT driver → the store."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from edge.config import load_station
from edge.runtime import Gateway
from edge.store import SqliteStore
from gascore.crypto import generate_signer
from gascore.records import Lane
from gasiot_sim.meter_mqtt import Meter, publish_meters
from support.mosquitto import Broker, running_broker
from support.station import MODELS, write_station
from support.wait import eventually

pytestmark = pytest.mark.peer

POINTS = {
    "volume": {"path": "$.volume"},
    "flow": {"path": "$.flow"},
    "valve_open": {"path": "$.valve"},
    "pressure": {"path": "$.pressure"},
    "battery": {"path": "$.battery"},
    "rssi": {"path": "$.rssi"},
    "alarm_code": {"path": "$.alarm"},
}


def station(tmp: Path, port: int, meters: list[str], client_id: str = "gw-mqtt") -> Path:
    data = {
        "gateway": {"id": "gw-mqtt", "cloud_url": "http://127.0.0.1:9", "data_dir": str(tmp / "edge")},
        "models": [str(MODELS)],
        "channels": [
            {
                "id": "broker",
                "driver": "mqtt",
                "host": "127.0.0.1",
                "port": port,
                "timestamp": "$.ts",
                "client_id": client_id,
                "reconnect_initial_s": 0.05,
                "reconnect_max_s": 0.2,
            }
        ],
        "devices": [
            {"id": m, "model": "smart_meter", "channel": "broker", "max_silent_s": 0.001, "points": POINTS}
            for m in meters
        ],
    }
    return write_station(tmp / "station.yaml", data)


def stored(tmp: Path) -> list[list[Any]]:
    store = SqliteStore(tmp / "edge" / "gateway.db")
    try:
        return store.read_all(Lane.TELEMETRY)
    finally:
        store.close()


async def start_gateway(path: Path) -> tuple[Gateway, asyncio.Event, asyncio.Task[None]]:
    gateway = Gateway.build(load_station(path), signer=generate_signer("ed25519"))
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop, flush_timeout_s=0.1))
    await eventually(lambda: all(s.online for s in gateway.statuses.values()), what="gateway subscribed")
    return gateway, stop, task


async def test_meter_readings_arrive_with_their_own_timestamps(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as broker:
        meters = [Meter("meter-1", seed=1), Meter("meter-2", seed=2, scenario="micro_leak")]
        gateway, stop, task = await start_gateway(station(tmp_path, broker.port, ["meter-1", "meter-2"]))
        sent = await publish_meters("127.0.0.1", broker.port, meters, interval_s=0.05, count=5)
        await eventually(lambda: gateway.statuses["meter-2"].samples >= 5 * len(POINTS), what="all messages")
        stop.set()
        await task
    rows = stored(tmp_path)
    last = sent[-1]
    got = {(r[0], r[1]): r for r in rows if r[2] == last["ts"]}
    assert got[("meter-2", "volume")][3] == pytest.approx(last["volume"])
    assert got[("meter-2", "alarm_code")][3] == 2
    assert got[("meter-2", "valve_open")][3] is True
    assert all(r[4] == "good" for r in rows if r[0] == "meter-1")
    # every published timestamp is a stored source timestamp
    assert {p["ts"] for p in sent} <= {r[2] for r in rows}


async def test_an_independent_publisher_and_a_bad_payload(tmp_path: Path) -> None:
    from peers._require import require_tool

    pub = require_tool("mosquitto_pub")
    async with running_broker(tmp_path) as broker:
        gateway, stop, task = await start_gateway(station(tmp_path, broker.port, ["m9"]))

        def publish(payload: str) -> None:
            subprocess.run(
                [pub, "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1", "-t", "gas/m9/up", "-m", payload],
                check=True,
                timeout=10,
            )

        publish(
            json.dumps(
                {
                    "ts": 1_800_000_000,
                    "volume": 12.5,
                    "flow": 0.1,
                    "valve": 0,
                    "pressure": 2,
                    "battery": 50,
                    "rssi": -80,
                    "alarm": 0,
                }
            )
        )
        await eventually(lambda: gateway.statuses["m9"].samples >= len(POINTS), what="first message")
        publish("not json {")
        publish(json.dumps({"ts": 1_800_000_001, "volume": 12.6}))
        await eventually(lambda: gateway.statuses["m9"].samples >= 3 * len(POINTS), what="three messages")
        stop.set()
        await task
    rows = {(r[1], r[2]): r for r in stored(tmp_path)}
    assert rows[("volume", 1_800_000_000_000)][3] == 12.5  # epoch seconds became milliseconds
    assert rows[("valve_open", 1_800_000_000_000)][3] is False
    assert rows[("volume", 1_800_000_001_000)][3] == 12.6
    assert rows[("flow", 1_800_000_001_000)][4] == "bad/device_error"  # missing in that payload
    assert any(r[4] == "bad/device_error" and r[3] is None for r in rows.values())  # the unparsable one


async def test_messages_sent_while_the_gateway_was_away_are_delivered(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as broker:
        path = station(tmp_path, broker.port, ["meter-1"], client_id="gw-persistent")
        gateway, stop, task = await start_gateway(path)  # creates the persistent session
        stop.set()
        await task
        sent = await publish_meters("127.0.0.1", broker.port, [Meter("meter-1", seed=5)], interval_s=0.01, count=4)
        gateway, stop, task = await start_gateway(path)
        await eventually(lambda: gateway.statuses["meter-1"].samples >= 4 * len(POINTS), what="queued messages")
        stop.set()
        await task
    assert {p["ts"] for p in sent} <= {r[2] for r in stored(tmp_path)}


async def test_broker_restart_is_survived(tmp_path: Path) -> None:
    async with running_broker(tmp_path) as broker:
        gateway, stop, task = await start_gateway(station(tmp_path, broker.port, ["meter-1"]))
        broker.stop()
        await eventually(lambda: gateway.statuses["meter-1"].online is False, what="link down")
        await Broker.start(broker)
        await eventually(lambda: gateway.statuses["meter-1"].online is True, timeout=20, what="link up again")
        sent = await publish_meters("127.0.0.1", broker.port, [Meter("meter-1", seed=6)], interval_s=0.01, count=2)
        await eventually(
            lambda: {p["ts"] for p in sent} <= {r[2] for r in gateway.store.read_all(Lane.TELEMETRY)},
            what="messages after the restart",
        )
        stop.set()
        await task
    events = [e for e in stored_events(tmp_path) if e[0] == "meter-1"]
    assert [e[1] for e in events if e[1].startswith("device_o")] == ["device_online", "device_offline", "device_online"]


def stored_events(tmp: Path) -> list[list[Any]]:
    store = SqliteStore(tmp / "edge" / "gateway.db")
    try:
        return store.read_all(Lane.EVENTS)
    finally:
        store.close()
