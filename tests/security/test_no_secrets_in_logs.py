"""No secret ever reaches a log line: a full round at DEBUG level — users created, logins right
and wrong, TOTP enrolment, API and enrollment tokens, a gateway enrolled with payload
encryption, its OPC-UA server logged into with right and wrong passwords, an OPC-UA client
channel with a password — and then every captured log record is searched for every secret."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aiohttp
import pytest
from asyncua import Client

from cloud.access import Principal
from cloud.appkeys import IDENTITY
from drivers.opcua import OpcUaChannel, OpcUaDriver, OpcUaPoint
from edge.enroll import PAYLOAD_KEY_FILE, load_payload_key
from edge.northbound.users import hash_password
from gasiot_sim.scada_opcua import ScadaSimServer
from support.cloud import running_cloud
from support.gateway import enrolled_station
from support.station import station_dict
from support.wait import eventually

USER_PASSWORD = "Zq8!secret-Pipeline-77"
WRONG_PASSWORD = "Wr0ng!guess-Attempt-99"
OPCUA_PASSWORD = "opcua-Sesame-4411"
SCADA_PASSWORD = "scada-Open-5522"


async def test_secrets_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secrets: list[str] = [USER_PASSWORD, WRONG_PASSWORD, OPCUA_PASSWORD, SCADA_PASSWORD]
    async with running_cloud(tmp_path / "cloud.db") as cloud, aiohttp.ClientSession() as http:
        secrets.append(cloud.admin_key)
        admin = cloud.auth()
        body = {"name": "alice", "role": "admin", "password": USER_PASSWORD}
        async with http.post(f"{cloud.url}/v1/users", json=body, headers=admin) as r:
            assert r.status == 201
        for password in (WRONG_PASSWORD, USER_PASSWORD):
            async with http.post(f"{cloud.url}/v1/auth/login", json={"username": "alice", "password": password}) as r:
                reply = await r.json()
        session = reply["token"]
        secrets.append(session)
        async with http.post(f"{cloud.url}/v1/auth/totp", headers=cloud.auth(session)) as r:
            seed = (await r.json())["otpauth_uri"].split("secret=")[1].split("&")[0]
            secrets.append(seed)
        alice = Principal("user:alice", "admin", frozenset({"*"}))
        token, _ = cloud.app[IDENTITY].create_token("integration", "viewer", "*", 30, owner=alice)
        secrets.append(token)

        data = station_dict(cloud_url=cloud.url, data_dir=tmp_path / "edge", ports=[9], gateway_id="gw-logs")
        data["opcua_server"] = {
            "endpoint": "opc.tcp://127.0.0.1:0/gasiot",
            "security": ["None"],
            "users": [{"name": "scada", "role": "viewer", "password_hash": hash_password(OPCUA_PASSWORD, log2_n=10)}],
        }
        station = await enrolled_station(cloud, tmp_path / "station.yaml", data, payload_encryption=True)
        secrets.append(load_payload_key(station.data_dir / PAYLOAD_KEY_FILE).hex())
        import json

        key_doc = json.loads(station.key_file.read_text())
        secrets += [str(v) for k, v in key_doc.items() if "private" in k or k in ("d", "secret", "seed")]
        from edge.runtime import Gateway

        gateway = Gateway.build(station)
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop, flush_timeout_s=0.2))
        try:
            await eventually(lambda: gateway.northbound is not None and gateway.northbound.port > 0, what="server")
            assert gateway.northbound is not None
            for password in (WRONG_PASSWORD, OPCUA_PASSWORD):
                client = Client(gateway.northbound.endpoint, timeout=5)
                client.set_user("scada")
                client.set_password(password)
                try:
                    await client.connect()
                    await client.disconnect()
                except Exception:
                    pass
        finally:
            stop.set()
            await task

    # An OPC-UA client channel logging into a SCADA with a password.
    scada = ScadaSimServer(seed=1, tick_s=None, users={"gateway": SCADA_PASSWORD})
    await scada.start()
    try:
        driver = OpcUaDriver(
            OpcUaChannel(endpoint=scada.endpoint, username="gateway", password=SCADA_PASSWORD, timeout_s=3)  # type: ignore[arg-type]
        )
        try:
            await driver.read(1, [("p", OpcUaPoint(node=scada.node_id("Inlet.Pressure")))])
        finally:
            await driver.close()
    finally:
        await scada.close()

    text = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert len(caplog.records) > 50  # the round was logged (at DEBUG) ...
    leaked = [s[:12] + "…" for s in secrets if s and s.strip() and s.strip() in text]
    assert leaked == []  # ... and no secret is in it
