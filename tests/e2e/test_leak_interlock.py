"""The regulator box's leak scenario through the whole local path: box methane rises, level 1
then level 2 alarms are raised, the interlock closes the slam-shut, the read-back confirms it;
a valve that does not move gives `unconfirmed`.  The simulator's time is stepped by the test."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from edge.config import load_station
from edge.runtime import Gateway
from gascore.crypto import generate_signer
from gascore.records import Lane
from gasiot_sim.modbus_server import RegulatorSimServer
from support.station import MODELS, REGULATOR_POINTS, REPO_ROOT, write_station
from support.wait import eventually


def station(tmp: Path, port: int) -> Path:
    data: dict[str, Any] = {
        "gateway": {"id": "gw-leak", "cloud_url": "http://127.0.0.1:9", "data_dir": str(tmp / "edge")},
        "models": [str(MODELS)],
        "channels": [{"id": "link", "driver": "modbus_tcp", "host": "127.0.0.1", "port": port}],
        "devices": [
            {
                "id": "box",
                "model": "regulator_box",
                "channel": "link",
                "poll_interval_s": 0.1,
                "points": {**REGULATOR_POINTS, "emergency_close": {"table": "coil", "address": 1, "type": "bool"}},
            }
        ],
        "rules": {"packs": ["regulator_box"], "pack_dirs": [str(REPO_ROOT / "configs" / "rules")]},
        "interlocks": [
            {
                "id": "box_gas_shutoff",
                "when": "box.box_methane.hihi",
                "action": {"device": "box", "point": "emergency_close", "value": True},
                "readback": {"point": "slam_shut_closed", "equals": True, "within_s": 3},
                "source": "utility procedure: close the slam-shut at 50 %LEL in the box",
            }
        ],
    }
    return write_station(tmp / "station.yaml", data)


async def run_leak(tmp: Path, *, stuck: bool) -> list[list[Any]]:
    sim = RegulatorSimServer(seed=1, scenario="leak", scenario_after_s=0.0, tick_s=3600)
    sim.box._leak_target = 70.0
    sim.box.valve_stuck = stuck
    port = await sim.start()
    try:
        gateway = Gateway.build(load_station(station(tmp, port)), signer=generate_signer())
        status = gateway.statuses["box"]
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop, flush_timeout_s=0.1))

        def events() -> list[list[Any]]:
            return gateway.store.read_all(Lane.EVENTS)

        def outcome() -> bool:
            return any(e[1] in ("interlock.done", "interlock.unconfirmed", "interlock.failed") for e in events())

        for _ in range(200):  # simulated minutes, not wall time
            if outcome():
                break
            seen = status.responses
            sim.step(1.0)
            await eventually(lambda s=seen: status.responses >= s + 2, what="the gateway to poll the new state")
        await eventually(outcome, timeout=10, what="the interlock outcome")
        stop.set()
        await task
        return [e for e in _reopen(tmp) if e[1].startswith(("alarm.", "interlock."))]
    finally:
        await sim.stop()


def _reopen(tmp: Path) -> list[list[Any]]:
    from edge.store import SqliteStore

    store = SqliteStore(tmp / "edge" / "gateway.db")
    try:
        return store.read_all(Lane.EVENTS)
    finally:
        store.close()


async def test_leak_raises_level_1_then_2_and_the_interlock_closes_the_valve(tmp_path: Path) -> None:
    events = await run_leak(tmp_path, stuck=False)
    sequence = [(e[1], e[4].get("alarm_id", "")) for e in events]
    raised = [alarm for kind, alarm in sequence if kind == "alarm.raised"]
    assert raised[:2] == ["box.box_methane.hi", "box.box_methane.hihi"], sequence
    kinds = [kind for kind, _ in sequence]
    assert kinds.index("interlock.triggered") > kinds.index("alarm.raised")
    done = next(e for e in events if e[1] == "interlock.done")
    assert done[4]["confirmed"] is True and done[4]["readback"]["value"] is True
    slam = [e for e in events if e[1] == "alarm.raised" and e[4]["alarm_id"] == "box.slam_shut"]
    assert slam, "the closed slam-shut is itself an alarm (state rule)"


async def test_a_valve_that_does_not_move_is_unconfirmed(tmp_path: Path) -> None:
    events = await run_leak(tmp_path, stuck=True)
    kinds = [e[1] for e in events]
    assert "interlock.triggered" in kinds and "interlock.unconfirmed" in kinds and "interlock.done" not in kinds
