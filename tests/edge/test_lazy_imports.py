"""A station that uses no OPC-UA, MQTT or SQL source does not load those stacks (#9: asyncua
alone is ~18 MB resident and ~0.4 s of start-up); one that does, loads them when it needs them.
Likewise `cryptography` (~10 MiB: only for TLS client certificates, payload encryption, Ed25519)
and the health endpoint's aiohttp.web and prometheus_client (only with a `health:` section)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support.station import MODELS, write_station

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sys
from pathlib import Path
from edge.config import load_station
from drivers.registry import spec_for
import edge.runtime, gasiot.cli
station = load_station(Path(sys.argv[1]))
for channel in station.config.channels:
    spec_for(channel.driver).create(channel)
print(*sorted(m for m in ("asyncua", "aiomqtt", "psycopg") if m in sys.modules))
"""

# A whole gateway built from the station, signing a batch the way the sync client does.
GATEWAY_PROBE = """
import sys
from pathlib import Path
from edge.config import load_station
from edge.runtime import Gateway
from gascore.crypto import generate_signer, write_key_file
from gascore.records import Lane
import gasiot.cli
station = load_station(Path(sys.argv[1]))
station.data_dir.mkdir(mode=0o700, parents=True)
write_key_file(generate_signer(), station.key_file)
gw = Gateway.build(station)
frame, digest = gw.sync._build(Lane.TELEMETRY, 1, "0" * 64, [["PT01", "p", 1, 1.5, "good"]])
assert frame and digest
heavy = ("cryptography", "prometheus_client", "aiohttp.web", "gmssl", "asyncua")
print(*sorted(m for m in heavy if m in sys.modules))
"""


def loaded_stacks(station: Path) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(station)], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    return set(out.stdout.split())


def loaded_by_gateway(station: Path) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", GATEWAY_PROBE, str(station)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def plain_station(tmp_path: Path, **extra: object) -> Path:
    data = {
        "gateway": {"id": "gw-lean", "cloud_url": "http://127.0.0.1:9", "data_dir": str(tmp_path / "edge")},
        "models": [str(MODELS)],
        "channels": [{"id": "link", "driver": "modbus_tcp", "host": "127.0.0.1", "port": 9}],
        "devices": [
            {
                "id": "PT01",
                "model": "regulator_box",
                "channel": "link",
                "points": {"outlet_pressure": {"table": "holding", "address": 0, "type": "uint16"}},
            }
        ],
        **extra,
    }
    return write_station(tmp_path / "station.yaml", data)


def test_a_plain_gateway_loads_neither_cryptography_nor_the_health_endpoint(tmp_path: Path) -> None:
    assert loaded_by_gateway(plain_station(tmp_path)) == set()


def test_a_gateway_with_a_health_section_loads_the_endpoint(tmp_path: Path) -> None:
    loaded = loaded_by_gateway(plain_station(tmp_path, health={}))
    assert "prometheus_client" in loaded
    assert "cryptography" not in loaded


def test_a_modbus_station_loads_no_opcua_mqtt_or_sql_stack() -> None:
    assert loaded_stacks(ROOT / "configs" / "stations" / "demo-station.yaml") == set()


def test_an_opcua_station_loads_asyncua(tmp_path: Path) -> None:
    data = {
        "gateway": {"id": "gw-lazy", "cloud_url": "http://127.0.0.1:9", "data_dir": str(tmp_path / "edge")},
        "models": [str(MODELS)],
        "channels": [{"id": "scada", "driver": "opcua", "endpoint": "opc.tcp://127.0.0.1:4840"}],
        "devices": [
            {
                "id": "GS01",
                "model": "gate_station",
                "channel": "scada",
                "points": {"inlet_pressure": {"node": "ns=2;s=Inlet.Pressure"}},
            }
        ],
    }
    assert loaded_stacks(write_station(tmp_path / "station.yaml", data)) == {"asyncua"}
