"""A station that uses no OPC-UA, MQTT or SQL source does not load those stacks (#9: asyncua
alone is ~18 MB resident and ~0.4 s of start-up); one that does, loads them when it needs them."""

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


def loaded_stacks(station: Path) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(station)], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    return set(out.stdout.split())


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
