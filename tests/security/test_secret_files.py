"""The startup check of every secret a station names: key files others can read stop
`gasiot edge run` (and fail `gasiot edge check`) with the file, the setting and the fix; an
inline password makes the station file a secret; ``${env:NAME}`` keeps it out of the file; the
password itself never appears in any output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edge.config import ConfigError, load_station
from edge.runtime import Gateway
from edge.secret_files import SecretFileError, check_secret_files
from gascore.crypto import generate_signer, write_key_file
from support.station import station_dict, write_station

PASSWORD = "s3cret-Pa55-do-not-log"


def gasiot(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gasiot", *args], capture_output=True, text=True, timeout=60, env=env
    )


def mqtt_station(tmp_path: Path, *, password: str | None = None, key_mode: int = 0o600) -> Path:
    key = tmp_path / "pki" / "mqtt-client.key"
    key.parent.mkdir(exist_ok=True)
    key.write_text("-----BEGIN PRIVATE KEY-----\nnot checked here\n-----END PRIVATE KEY-----\n")
    key.chmod(key_mode)
    (tmp_path / "pki" / "client.crt").write_text("cert")
    data: dict[str, Any] = station_dict(cloud_url="http://127.0.0.1:9", data_dir=tmp_path / "data", ports=[5020])
    channel: dict[str, Any] = {
        "id": "broker",
        "driver": "mqtt",
        "host": "127.0.0.1",
        "port": 8883,
        "tls": True,
        "cert_file": "pki/client.crt",
        "key_file": "pki/mqtt-client.key",
    }
    if password is not None:
        channel |= {"username": "gw", "password": password}
    data["channels"].append(channel)
    path = write_station(tmp_path / "station.yaml", data)
    path.chmod(0o644)
    return path


def test_a_channel_key_others_can_read_fails_check_and_run(tmp_path: Path) -> None:
    station_file = mqtt_station(tmp_path, key_mode=0o644)
    key = tmp_path / "pki" / "mqtt-client.key"
    check = gasiot("edge", "check", str(station_file))
    assert check.returncode == 2
    assert "channels.broker.key_file" in check.stderr
    assert f"{key} has mode 0644" in check.stderr
    assert f"chmod 600 {key}" in check.stderr

    run = gasiot("edge", "run", str(station_file))
    assert run.returncode == 1
    assert "refusing to start" in run.stderr and "channels.broker.key_file" in run.stderr

    key.chmod(0o600)
    assert gasiot("edge", "check", str(station_file)).returncode == 0


def test_gateway_build_lists_every_problem_at_once(tmp_path: Path) -> None:
    station_file = mqtt_station(tmp_path, key_mode=0o640)
    station = load_station(station_file)
    station.data_dir.mkdir(parents=True)
    write_key_file(generate_signer("sm2-sm3"), station.key_file)
    station.key_file.chmod(0o644)
    (station.data_dir / "tls.key").mkdir()  # not a regular file
    with pytest.raises(SecretFileError) as err:
        Gateway.build(station)
    wheres = sorted(p.where for p in err.value.problems)
    assert wheres == ["channels.broker.key_file", "gateway TLS key", "gateway signing key"]
    assert "is not a regular file" in str(err.value)
    assert not (station.data_dir / "store.db").exists()  # nothing was opened


def test_a_missing_channel_key_is_named(tmp_path: Path) -> None:
    station_file = mqtt_station(tmp_path)
    (tmp_path / "pki" / "mqtt-client.key").unlink()
    (problem,) = check_secret_files(load_station(station_file))
    assert problem.where == "channels.broker.key_file" and "does not exist" in problem.message


def test_an_inline_password_makes_the_station_file_a_secret(tmp_path: Path) -> None:
    station_file = mqtt_station(tmp_path, password=PASSWORD)
    check = gasiot("edge", "check", str(station_file))
    assert check.returncode == 2
    assert "channels.broker.password" in check.stderr and "chmod 640" in check.stderr
    assert "${env:NAME}" in check.stderr
    assert PASSWORD not in check.stdout + check.stderr

    station_file.chmod(0o640)  # group-readable for a root:gasiot layout is fine
    assert gasiot("edge", "check", str(station_file)).returncode == 0


def test_a_password_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    station_file = mqtt_station(tmp_path, password="${env:GASIOT_TEST_MQTT_PASSWORD}")  # 0644 is fine then
    monkeypatch.setenv("GASIOT_TEST_MQTT_PASSWORD", PASSWORD)
    station = load_station(station_file)
    assert station.channels["broker"].password.get_secret_value() == PASSWORD
    assert check_secret_files(station) == []

    monkeypatch.delenv("GASIOT_TEST_MQTT_PASSWORD")
    with pytest.raises(ConfigError) as err:
        load_station(station_file)
    assert "environment variable GASIOT_TEST_MQTT_PASSWORD is not set" in str(err.value)
    assert "channels[1].password" in str(err.value) or "password" in str(err.value)


def test_a_malformed_environment_reference_is_refused(tmp_path: Path) -> None:
    station_file = mqtt_station(tmp_path, password="${ENV:lower case}")
    with pytest.raises(ConfigError, match=r"write an environment reference as \$\{env:NAME\}"):
        load_station(station_file)
