"""Acknowledging alarms from both ends: the technician's CLI on the gateway and the central
team's command from the cloud end in the same alarm state on both sides."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from edge.alarms.model import AlarmState
from edge.runtime import Gateway
from gasiot_sim.modbus_server import RegulatorSimServer
from support.cloud import running_cloud
from support.gateway import enrolled_station
from support.station import REGULATOR_POINTS, REPO_ROOT, station_dict
from support.wait import eventually


def cloud_alarm_events(cloud: Any, alarm_id: str) -> list[tuple[str, dict[str, Any]]]:
    import json

    rows = cloud.rows("SELECT kind, data FROM events WHERE kind LIKE 'alarm.%' ORDER BY rowid")
    return [(k, json.loads(d)) for k, d in rows if json.loads(d).get("alarm_id") == alarm_id]


async def test_ack_from_the_gateway_cli_and_from_the_cloud(tmp_path: Path) -> None:
    sim = RegulatorSimServer(seed=3, tick_s=3600)
    port = await sim.start()
    try:
        async with running_cloud(tmp_path / "cloud.db") as cloud:
            data = station_dict(
                cloud_url=cloud.url,
                data_dir=tmp_path / "edge",
                ports=[port],
                gateway_id="gw-ack",
                poll_interval_s=0.1,
                points=REGULATOR_POINTS,
                sync={"command_poll_s": 0.5, "max_batch_age_s": 0.05},
            )
            data["rules"] = {"packs": ["regulator_box"], "pack_dirs": [str(REPO_ROOT / "configs" / "rules")]}
            station_file = tmp_path / "station.yaml"
            station = await enrolled_station(cloud, station_file, data)
            gateway = Gateway.build(station)
            stop = asyncio.Event()
            task = asyncio.create_task(gateway.run(stop))
            assert gateway.local is not None
            alarm_id = "dev0.tamper"

            def edge_state() -> AlarmState | None:
                alarm = gateway.local.alarms.get(alarm_id) if gateway.local else None
                return alarm.state if alarm else None

            # 1. the door opens: tamper alarm; the technician acknowledges on site with the CLI
            sim.box.set_door(True)
            sim.step(0.1)
            await eventually(lambda: edge_state() == AlarmState.ACTIVE_UNACKED, what="tamper alarm")
            proc = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "gasiot", "edge", "ack", str(station_file), alarm_id, "--by", "张工"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert proc.returncode == 0 and proc.stdout.startswith("ok"), proc.stdout + proc.stderr
            assert edge_state() == AlarmState.ACTIVE_ACKED
            await eventually(
                lambda: any(
                    k == "alarm.acked" and d.get("by") == "张工" for k, d in cloud_alarm_events(cloud, alarm_id)
                ),
                what="ack in the cloud",
            )

            # 2. the door closes and opens again: a new activation, acknowledged from the cloud
            sim.box.set_door(False)
            sim.step(0.1)
            await eventually(lambda: edge_state() == AlarmState.NORMAL, what="back to normal")
            sim.box.set_door(True)
            sim.step(0.1)
            await eventually(
                lambda: sum(k == "alarm.raised" for k, _ in cloud_alarm_events(cloud, alarm_id)) == 2,
                what="the second activation in the cloud",
            )
            raised_ms = [d for k, d in cloud_alarm_events(cloud, alarm_id) if k == "alarm.raised"][-1]["raised_ms"]
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    f"{cloud.url}/v1/gateways/gw-ack/commands",
                    headers=cloud.auth(),
                    json={
                        "type": "alarm.ack",
                        "body": {"alarm_id": alarm_id, "by": "调度中心", "raised_ms": raised_ms},
                    },
                ) as r,
            ):
                assert r.status == 201
            await eventually(lambda: edge_state() == AlarmState.ACTIVE_ACKED, what="cloud ack applied at the edge")
            await eventually(
                lambda: cloud.rows("SELECT status FROM commands")[0][0] == "done", what="command result in the cloud"
            )
            acks = [d for k, d in cloud_alarm_events(cloud, alarm_id) if k == "alarm.acked"]
            assert [a["origin"] for a in acks] == ["edge", "cloud"]

            # 3. shelved from the cloud during maintenance: hidden until then, still tracked
            import time

            until = int(time.time() * 1000) + 3_600_000
            shelve = {"alarm_id": alarm_id, "by": "调度中心", "until_ms": until, "reason": "箱门维修"}
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    f"{cloud.url}/v1/gateways/gw-ack/commands",
                    headers=cloud.auth(),
                    json={"type": "alarm.shelve", "body": shelve},
                ) as r,
            ):
                assert r.status == 201
            await eventually(
                lambda: (a := gateway.local.alarms.get(alarm_id)) is not None and a.shelved_until_ms == until,
                what="shelved at the edge",
            )
            await eventually(
                lambda: any(k == "alarm.shelved" for k, _ in cloud_alarm_events(cloud, alarm_id)),
                what="the shelving reported to the cloud",
            )
            stop.set()
            await task
    finally:
        await sim.stop()


async def test_an_alarm_survives_a_gateway_restart_and_still_clears(tmp_path: Path) -> None:
    sim = RegulatorSimServer(seed=4, tick_s=3600)
    port = await sim.start()
    try:
        async with running_cloud(tmp_path / "cloud.db") as cloud:
            data = station_dict(
                cloud_url=cloud.url,
                data_dir=tmp_path / "edge",
                ports=[port],
                gateway_id="gw-rst",
                poll_interval_s=0.1,
                points=REGULATOR_POINTS,
            )
            data["rules"] = {"packs": ["regulator_box"], "pack_dirs": [str(REPO_ROOT / "configs" / "rules")]}
            station = await enrolled_station(cloud, tmp_path / "station.yaml", data)

            async def run_until(condition: Any, what: str) -> None:
                gateway = Gateway.build(station)
                stop = asyncio.Event()
                task = asyncio.create_task(gateway.run(stop))
                try:
                    await eventually(lambda: condition(gateway), what=what)
                finally:
                    stop.set()
                    await task

            def state(gateway: Gateway) -> AlarmState | None:
                alarm = gateway.local.alarms.get("dev0.tamper") if gateway.local else None
                return alarm.state if alarm else None

            sim.box.set_door(True)
            sim.step(0.1)
            await run_until(lambda g: state(g) == AlarmState.ACTIVE_UNACKED, "tamper alarm")
            # restarted with the door still open: the same alarm, not a new one
            await run_until(
                lambda g: state(g) == AlarmState.ACTIVE_UNACKED and g.statuses["dev0"].responses >= 3,
                "the restarted gateway to poll",
            )
            sim.box.set_door(False)
            sim.step(0.1)
            await run_until(lambda g: state(g) == AlarmState.CLEARED_UNACKED, "the restored condition to clear")
            kinds = [k for k, _ in cloud_alarm_events(cloud, "dev0.tamper")]
            assert kinds.count("alarm.raised") == 1 and kinds[-1] == "alarm.cleared"
    finally:
        await sim.stop()
