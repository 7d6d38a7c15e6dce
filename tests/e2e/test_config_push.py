"""Configuration pushed from the cloud: versions uploaded and pushed (a second person confirms),
the gateway validates, applies atomically and reloads in-process without losing what it buffered,
reports the version it runs; an invalid version is rejected untouched, and one it cannot start on
is rolled back to the file that worked."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from cloud.appkeys import CONFIGS
from edge.runtime import Gateway, serve
from gasiot_sim.modbus_server import RegulatorSimServer
from support.cloud import running_cloud
from support.gateway import enrolled_station
from support.station import station_dict
from support.wait import eventually


async def push(http: aiohttp.ClientSession, cloud: Any, data: dict[str, Any]) -> int:
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    async with http.post(
        f"{cloud.url}/v1/gateways/gw-cfg/configs?comment=test", data=text.encode(), headers=cloud.auth()
    ) as r:
        assert r.status == 201, await r.text()
        version = (await r.json())["version"]
    async with http.post(f"{cloud.url}/v1/gateways/gw-cfg/configs/{version}/push", headers=cloud.auth()) as r:
        assert r.status == 201, await r.text()
        reply = await r.json()
    assert reply["status"] == "awaiting_confirmation"
    second = cloud.auth(cloud.token("admin"))
    async with http.post(f"{cloud.url}/v1/gateways/gw-cfg/commands/{reply['id']}/confirm", headers=second) as r:
        assert r.status == 200, await r.text()
    return int(version)


async def test_push_apply_reject_and_roll_back(tmp_path: Path) -> None:
    sim = RegulatorSimServer(seed=3, tick_s=0.1)
    port = await sim.start()
    try:
        async with running_cloud(tmp_path / "cloud.db") as cloud:
            data = station_dict(
                cloud_url=cloud.url,
                data_dir=tmp_path / "edge",
                ports=[port],
                gateway_id="gw-cfg",
                poll_interval_s=0.2,
                sync={"command_poll_s": 0.5, "max_batch_age_s": 0.05},
            )
            station_file = tmp_path / "station.yaml"
            station = await enrolled_station(cloud, station_file, data)
            from edge.config import load_station

            gateway = Gateway.build(station)
            stop, reload = asyncio.Event(), asyncio.Event()
            task = asyncio.create_task(
                serve(gateway, stop=stop, reload=reload, load=lambda: load_station(station_file))
            )

            def state(version: int) -> str | None:
                found = cloud.app[CONFIGS].get("gw-cfg", version)
                return None if found is None else str(found["state"])

            def stored_readings() -> int:
                return int(cloud.rows("SELECT count(*) FROM readings")[0][0])

            try:
                await eventually(lambda: stored_readings() > 0, what="first readings")
                async with aiohttp.ClientSession() as http:
                    # v1: poll faster
                    v1 = copy.deepcopy(data)
                    v1["devices"][0]["poll_interval_s"] = 0.1
                    version = await push(http, cloud, v1)
                    await eventually(lambda: state(version) == "applied", timeout=30, what="v1 applied")
                    assert yaml.safe_load(station_file.read_text())["devices"][0]["poll_interval_s"] == 0.1
                    before = stored_readings()
                    await eventually(lambda: stored_readings() > before, what="readings after the reload")

                    # v2: an unknown thing model — rejected, the file and the gateway untouched
                    v2 = copy.deepcopy(v1)
                    v2["devices"][0]["model"] = "no_such_model"
                    version2 = await push(http, cloud, v2)
                    await eventually(lambda: state(version2) == "rejected", timeout=30, what="v2 rejected")
                    assert "no_such_model" in cloud.app[CONFIGS].get("gw-cfg", version2)["detail"]
                    assert yaml.safe_load(station_file.read_text())["devices"][0]["model"] == "regulator_box"

                    # v3: valid on paper, but the gateway cannot start on it (no such signing key)
                    v3 = copy.deepcopy(v1)
                    v3["gateway"]["key_file"] = str(tmp_path / "missing.key")
                    version3 = await push(http, cloud, v3)
                    await eventually(lambda: state(version3) == "rolled_back", timeout=30, what="v3 rolled back")
                    assert "key_file" not in yaml.safe_load(station_file.read_text())["gateway"]
                    before = stored_readings()
                    await eventually(lambda: stored_readings() > before, what="readings after the roll-back")
                    async with http.get(f"{cloud.url}/v1/gateways/gw-cfg/configs", headers=cloud.auth()) as r:
                        states = [v["state"] for v in (await r.json())["versions"]]
                    assert states == ["applied", "rejected", "rolled_back"]
                # Nothing lost across three reloads: every batch's seq continues.
                (gaps,) = cloud.rows(
                    "SELECT count(*) FROM batches b WHERE b.lane = 'telemetry' AND b.seq > 1 AND NOT EXISTS"
                    " (SELECT 1 FROM batches p WHERE p.gateway_id = b.gateway_id AND p.lane = b.lane"
                    " AND p.seq = b.seq - 1)"
                )[0]
                assert gaps == 0
            finally:
                stop.set()
                await asyncio.wait_for(task, 30)
    finally:
        await sim.stop()
