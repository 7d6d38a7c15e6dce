"""Enroll a test gateway against a running cloud, as `gasiot edge enroll` does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from edge.config import Station, load_station
from edge.enroll import enroll
from support.cloud import CloudHandle
from support.station import write_station


async def enrolled_station(
    cloud: CloudHandle, path: Path, data: dict[str, Any], *, payload_encryption: bool = False
) -> Station:
    write_station(path, data)
    station = load_station(path)
    gateway_id = station.config.gateway.id
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{cloud.url}/v1/enrollment-tokens", json={"gateway_id": gateway_id}, headers=cloud.auth()) as r,
    ):
        assert r.status == 201, await r.text()
        token = (await r.json())["token"]
    await enroll(
        cloud_url=cloud.url,
        gateway_id=gateway_id,
        token=token,
        key_file=station.key_file,
        payload_encryption=payload_encryption,
    )
    return station
