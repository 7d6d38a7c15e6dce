"""Writes and services from the central team: a signed cloud command goes down, the gateway
checks it against the thing model, writes, confirms by read-back, and the result and the audit
events come back up.  Services need the admin role in the cloud."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edge.runtime import Gateway
from gasiot_sim.modbus_server import RegulatorSimServer
from support.cloud import running_cloud
from support.gateway import enrolled_station
from support.station import REGULATOR_POINTS, station_dict
from support.wait import eventually


async def post(cloud: Any, body: dict[str, Any], key: str | None = None) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{cloud.url}/v1/gateways/gw-ctl/commands", headers=cloud.auth(key), json=body) as r,
    ):
        return r.status


async def test_point_write_and_service_call_from_the_cloud(tmp_path: Path) -> None:
    from cloud.server import create_api_key

    sim = RegulatorSimServer(seed=3, tick_s=3600)
    port = await sim.start()
    try:
        async with running_cloud(tmp_path / "cloud.db") as cloud:
            data = station_dict(
                cloud_url=cloud.url,
                data_dir=tmp_path / "edge",
                ports=[port],
                gateway_id="gw-ctl",
                poll_interval_s=0.1,
                points=REGULATOR_POINTS,
                sync={"command_poll_s": 0.5, "max_batch_age_s": 0.05},
            )
            data["devices"][0]["services"] = {
                "set_outlet_pressure": {"steps": [{"point": "setpoint", "value": "$setpoint"}], "within_s": 5}
            }
            station = await enrolled_station(cloud, tmp_path / "station.yaml", data)
            gateway = Gateway.build(station)
            stop = asyncio.Event()
            task = asyncio.create_task(gateway.run(stop))
            try:
                write = {
                    "type": "point.write",
                    "body": {"device": "dev0", "point": "setpoint", "value": 3.3, "by": "调度中心"},
                }
                assert await post(cloud, write) == 201
                await eventually(lambda: sim.snapshot()["setpoint"] == pytest.approx(3.3, abs=0.01), what="written")

                def results() -> list[tuple[str, str]]:
                    return cloud.rows("SELECT status, result FROM commands ORDER BY id")

                await eventually(lambda: results() and results()[0][0] == "done", what="write confirmed in the cloud")
                assert "confirmed by read-back" in results()[0][1]

                # Out of the model's range: refused at the edge, nothing written.
                bad = {"type": "point.write", "body": {"device": "dev0", "point": "setpoint", "value": 42, "by": "x"}}
                assert await post(cloud, bad) == 201
                await eventually(
                    lambda: len(results()) == 2 and results()[1][0] not in ("pending", "delivered"), what="refusal"
                )
                assert results()[1][0] == "refused" and "outside 1" in results()[1][1]
                assert sim.snapshot()["setpoint"] == pytest.approx(3.3, abs=0.01)

                # A service: an operator key is refused by the cloud; the admin's call runs.
                call = {
                    "type": "service.call",
                    "body": {
                        "device": "dev0",
                        "service": "set_outlet_pressure",
                        "args": {"setpoint": 2.2},
                        "by": "王工",
                    },
                }
                operator_key = create_api_key(cloud.repo, "operator", "duty desk")
                assert await post(cloud, call, operator_key) == 403
                assert await post(cloud, call) == 201
                # Dual control: held until a second person confirms; its author cannot.
                (command_id,) = cloud.rows("SELECT id FROM commands WHERE type = 'service.call'")[0]
                confirm = f"{cloud.url}/v1/gateways/gw-ctl/commands/{command_id}/confirm"
                async with aiohttp.ClientSession() as http:
                    async with http.post(confirm, headers=cloud.auth()) as r:
                        assert r.status == 409 and "second person" in (await r.json())["detail"]
                    assert results()[2][0] == "awaiting_confirmation"
                    async with http.post(confirm, headers=cloud.auth(operator_key)) as r:
                        assert r.status == 403  # the second person needs the same permission
                    async with http.post(confirm, headers=cloud.auth(cloud.token("admin"))) as r:
                        assert r.status == 200, await r.text()
                await eventually(lambda: len(results()) == 3 and results()[2][0] == "done", what="service done")
                assert sim.snapshot()["setpoint"] == pytest.approx(2.2, abs=0.01)

                def audit() -> list[tuple[str, dict[str, Any]]]:
                    rows = cloud.rows("SELECT kind, data FROM events WHERE kind LIKE 'control.%' ORDER BY rowid")
                    return [(k, json.loads(d)) for k, d in rows]

                await eventually(lambda: sum(k == "control.done" for k, _ in audit()) == 2, what="audit in the cloud")
                # A re-read on request: the result names what the device answered.
                assert await post(cloud, {"type": "device.read", "body": {"device": "dev0", "by": "调度中心"}}) == 201
                await eventually(lambda: results()[-1][0] == "done", what="re-read done")
                detail = json.loads(json.loads(results()[-1][1])["detail"])
                assert detail["setpoint"] == pytest.approx(2.2) and "outlet_pressure" in detail
                # The gateway announced its device: the registry knows it (held: model not uploaded).
                from cloud.appkeys import REGISTRY

                (device,) = cloud.app[REGISTRY].devices(gateway_id="gw-ctl")
                assert (device["device_id"], device["model_id"], device["lifecycle"]) == (
                    "dev0",
                    "regulator_box",
                    "provisioned",
                )
                assert ("control.write", "调度中心 (cloud)") in [(k, d["by"]) for k, d in audit()]
                assert ("control.call", "王工 (cloud)") in [(k, d["by"]) for k, d in audit()]
            finally:
                stop.set()
                await task
    finally:
        await sim.stop()
