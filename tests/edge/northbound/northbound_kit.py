"""A running gateway with its OPC-UA server (against the simulated regulator box), and asyncua
clients logged in as each role over Basic256Sha256/SignAndEncrypt."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

from drivers.opcua.security import create_self_signed
from drivers.opcua.trust_dir import TrustDirectory
from edge.config import load_station
from edge.northbound.users import hash_password
from edge.runtime import Gateway
from gascore.crypto import generate_signer, write_key_file
from gasiot_sim.modbus_server import RegulatorSimServer
from support.station import REGULATOR_POINTS, REPO_ROOT, station_dict, write_station

PASSWORDS = {"viewer1": "view-pw-1", "operator1": "oper-pw-1", "engineer1": "eng-pw-1"}
CLIENT_URI = "urn:gasiot:test:scada-client"


@dataclass
class Running:
    gateway: Gateway
    sim: RegulatorSimServer
    station_file: Path
    data: dict[str, Any]
    client_cert: Path
    client_key: Path
    tmp: Path

    @property
    def server(self) -> Any:
        assert self.gateway.northbound is not None
        return self.gateway.northbound

    @property
    def endpoint(self) -> str:
        return str(self.server.endpoint)

    def client(self, user: str | None, *, secure: bool = True, cert: tuple[Path, Path] | None = None) -> Client:
        client = Client(self.endpoint, timeout=10)
        client.application_uri = CLIENT_URI
        if user is not None:
            client.set_user(user)
            client.set_password(PASSWORDS.get(user, "wrong"))
        if secure:
            c, k = cert or (self.client_cert, self.client_key)
            client._gasiot_security = (str(c), str(k), str(self.server.paths.certificate))  # type: ignore[attr-defined]
        return client


async def connect(client: Client) -> Client:
    sec = getattr(client, "_gasiot_security", None)
    if sec is not None:
        await client.set_security(
            SecurityPolicyBasic256Sha256,
            certificate=sec[0],
            private_key=sec[1],
            server_certificate=sec[2],
            mode=ua.MessageSecurityMode.SignAndEncrypt,
        )
    await client.connect()
    return client


@contextlib.asynccontextmanager
async def session(running: Running, user: str | None, **kw: Any) -> AsyncIterator[Client]:
    client = await connect(running.client(user, **kw))
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            await client.disconnect()


def opcua_section(tmp: Path, **extra: Any) -> dict[str, Any]:
    roles = {"viewer1": "viewer", "operator1": "operator", "engineer1": "engineer"}
    return {
        "endpoint": "opc.tcp://127.0.0.1:0/gasiot",
        "users": [
            {"name": name, "role": role, "password_hash": hash_password(PASSWORDS[name], log2_n=10)}
            for name, role in roles.items()
        ],
        **extra,
    }


def regulator_station(tmp: Path, port: int, **opcua: Any) -> dict[str, Any]:
    data = station_dict(
        cloud_url="http://127.0.0.1:9", data_dir=tmp / "edge", ports=[port], gateway_id="gw-nb", poll_interval_s=0.1
    )
    points = dict(REGULATOR_POINTS)
    points["slam_shut_reset"] = {"table": "coil", "address": 0, "type": "bool"}
    data["devices"][0]["points"] = points
    data["devices"][0]["services"] = {
        "reset_slam_shut": {
            "steps": [{"point": "slam_shut_reset", "value": True, "confirm": False}],
            "expect": {"slam_shut_closed": False},
            "within_s": 5,
        },
        "set_outlet_pressure": {"steps": [{"point": "setpoint", "value": "$setpoint"}], "within_s": 5},
    }
    data["rules"] = {"packs": ["regulator_box"], "pack_dirs": [str(REPO_ROOT / "configs" / "rules")]}
    data["opcua_server"] = opcua_section(tmp, **opcua)
    return data


@contextlib.asynccontextmanager
async def running_gateway(tmp: Path, *, trust_client: bool = True, **opcua: Any) -> AsyncIterator[Running]:
    sim = RegulatorSimServer(seed=5, tick_s=3600)
    port = await sim.start()
    data = regulator_station(tmp, port, **opcua)
    station_file = write_station(tmp / "station.yaml", data)
    station = load_station(station_file)
    station.data_dir.mkdir(parents=True, exist_ok=True)
    write_key_file(generate_signer("sm2-sm3"), station.key_file)
    cert, key = tmp / "client" / "cert.der", tmp / "client" / "key.pem"
    await asyncio.to_thread(create_self_signed, cert, key, CLIENT_URI, hostnames=["localhost"])
    if trust_client:
        TrustDirectory(station.data_dir / "pki" / "opcua-clients").trust(cert)
    gateway = Gateway.build(station)
    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop, flush_timeout_s=0.2))
    try:
        from support.wait import eventually

        await eventually(
            lambda: gateway.northbound is not None and gateway.northbound.port > 0, what="OPC-UA server up"
        )
        yield Running(gateway, sim, station_file, data, cert, key, tmp)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)
        await sim.stop()


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    async with running_gateway(tmp_path) as r:
        yield r
