"""MQTT over TLS with client certificates from the utility CA, through a real mosquitto broker;
the meter side is mosquitto_pub (an independent client)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest
from peers._require import require_tool

from cloud.ca import init_ca
from edge.config import load_station
from edge.runtime import Gateway
from gascore.crypto import generate_signer
from gascore.records import Lane
from gascore.tls import generate_key_pem, make_csr_pem, write_private_pem, write_public_pem
from support.mosquitto import BrokerTls, running_broker
from support.station import MODELS, write_station
from support.wait import eventually

pytestmark = pytest.mark.peer


def pki(tmp: Path) -> dict[str, Path]:
    ca = init_ca(tmp / "ca")
    cert, key = ca.issue_server(["localhost"], ["127.0.0.1"])
    files = {
        "ca": ca.cert_path,
        "server_crt": tmp / "server.crt",
        "server_key": tmp / "server.key",
        "client_crt": tmp / "client.crt",
        "client_key": tmp / "client.key",
    }
    write_public_pem(files["server_crt"], cert)
    write_private_pem(files["server_key"], key)
    client_key = generate_key_pem()
    write_private_pem(files["client_key"], client_key)
    write_public_pem(files["client_crt"], ca.issue_client(make_csr_pem(client_key, "gw-mq"), "gw-mq").cert_pem)
    return files


def station(tmp: Path, port: int, files: dict[str, Path], *, with_cert: bool) -> Path:
    channel = {
        "id": "broker",
        "driver": "mqtt",
        "host": "127.0.0.1",
        "port": port,
        "tls": True,
        "ca_file": str(files["ca"]),
        "reconnect_initial_s": 0.05,
        "reconnect_max_s": 0.2,
    }
    if with_cert:
        channel |= {"cert_file": str(files["client_crt"]), "key_file": str(files["client_key"])}
    return write_station(
        tmp / "station.yaml",
        {
            "gateway": {"id": "gw-mq", "cloud_url": "http://127.0.0.1:9", "data_dir": str(tmp / "edge")},
            "models": [str(MODELS)],
            "channels": [channel],
            "devices": [
                {"id": "m1", "model": "smart_meter", "channel": "broker", "points": {"volume": {"path": "$.v"}}}
            ],
        },
    )


async def test_meter_over_mqtt_tls_with_client_certificates(tmp_path: Path) -> None:
    pub = require_tool("mosquitto_pub")
    files = pki(tmp_path)
    tls = BrokerTls(files["ca"], files["server_crt"], files["server_key"])
    async with running_broker(tmp_path, tls) as broker:
        gateway = Gateway.build(
            load_station(station(tmp_path, broker.port, files, with_cert=True)), signer=generate_signer()
        )
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop, flush_timeout_s=0.1))
        await eventually(lambda: gateway.statuses["m1"].online is True, what="TLS session with the broker")
        subprocess.run(
            [
                pub,
                "-h",
                "127.0.0.1",
                "-p",
                str(broker.port),
                "--cafile",
                str(files["ca"]),
                "--cert",
                str(files["client_crt"]),
                "--key",
                str(files["client_key"]),
                "-q",
                "1",
                "-t",
                "gas/m1/up",
                "-m",
                json.dumps({"v": 42.5}),
            ],
            check=True,
            timeout=10,
        )
        await eventually(
            lambda: any(r[1] == "volume" and r[3] == 42.5 for r in gateway.store.read_all(Lane.TELEMETRY)),
            what="the reading",
        )
        stop.set()
        await task


async def test_without_a_client_certificate_the_broker_refuses(tmp_path: Path) -> None:
    files = pki(tmp_path)
    tls = BrokerTls(files["ca"], files["server_crt"], files["server_key"])
    async with running_broker(tmp_path, tls) as broker:
        gateway = Gateway.build(
            load_station(station(tmp_path, broker.port, files, with_cert=False)), signer=generate_signer()
        )
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop, flush_timeout_s=0.1))
        await eventually(lambda: gateway.statuses["m1"].online is False, what="the refusal")
        assert "broker unreachable" in gateway.statuses["m1"].reason
        stop.set()
        await task
