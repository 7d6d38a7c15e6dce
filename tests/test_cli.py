"""The `gasiot` command as operators use it: real processes, real sockets."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cloud import cloud_process
from support.station import station_dict, write_station


def gasiot(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gasiot", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[tuple[str, str]]:
    # plain HTTP on loopback only; TLS is covered by tests/e2e/test_tls_sync.py
    with cloud_process(tmp_path) as (url, key, log):
        assert stat.S_IMODE((tmp_path / "admin.key").stat().st_mode) == 0o600
        yield url, key
    assert "gsk_" not in log.read_text()  # the admin key is never logged


def token(url: str, admin_key: str, gateway_id: str) -> str:
    req = urllib.request.Request(
        f"{url}/v1/enrollment-tokens",
        data=json.dumps({"gateway_id": gateway_id}).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {admin_key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return str(json.loads(resp.read())["token"])


def test_enroll_writes_a_private_key_and_a_token_works_once(tmp_path: Path, cloud: tuple[str, str]) -> None:
    url, admin_key = cloud
    station = write_station(
        tmp_path / "station.yaml",
        station_dict(cloud_url=url, data_dir=tmp_path / "edge", ports=[5020], gateway_id="gw-cli"),
    )
    t = token(url, admin_key, "gw-cli")
    first = gasiot("edge", "enroll", str(station), "--token", t)
    assert first.returncode == 0, first.stderr
    key = tmp_path / "edge" / "gateway.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "enrolled gw-cli" in first.stdout
    shown = gasiot("keys", "show", str(key))
    info = json.loads(shown.stdout)
    assert info["alg"] == "sm2-sm3" and len(bytes.fromhex(info["public_key"])) == 65
    assert json.loads(key.read_text())["private_key"] not in shown.stdout

    key.unlink()
    again = gasiot("edge", "enroll", str(station), "--token", t)
    assert again.returncode == 1 and "refused enrollment (HTTP 401)" in again.stderr
    assert not key.exists()


def test_edge_run_without_a_key_explains_what_to_do(tmp_path: Path) -> None:
    station = write_station(
        tmp_path / "station.yaml",
        station_dict(cloud_url="http://127.0.0.1:9", data_dir=tmp_path / "edge", ports=[5020]),
    )
    proc = gasiot("edge", "run", str(station))
    assert proc.returncode == 1
    assert "gateway.key" in proc.stderr and "gasiot edge enroll" in proc.stderr


def test_keys_generate_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "k.key"
    assert gasiot("keys", "generate", str(out), "--alg", "ed25519").returncode == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    before = out.read_bytes()
    proc = gasiot("keys", "generate", str(out))
    assert proc.returncode == 1 and str(out) in proc.stderr
    assert out.read_bytes() == before


def test_demo_runs_and_reports_no_loss(tmp_path: Path) -> None:
    proc = gasiot("demo", "--seconds", "4", "--boxes", "2", "--workdir", str(tmp_path / "demo"), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in proc.stdout.splitlines()
        if line.count("│") == 3
    }
    assert int(lines["readings sampled at the edge"]) > 0
    assert lines["lost"] == "0" and lines["duplicates"] == "0" and lines["signature failures"] == "0"
    assert os.path.exists(tmp_path / "demo" / "cloud.db")


def test_enroll_against_an_unreachable_cloud_keeps_nothing(tmp_path: Path) -> None:
    station = write_station(
        tmp_path / "station.yaml",
        station_dict(cloud_url="http://127.0.0.1:9", data_dir=tmp_path / "edge", ports=[5020]),
    )
    proc = gasiot("edge", "enroll", str(station), "--token", "get_x")
    assert proc.returncode == 1 and "cannot reach" in proc.stderr
    assert list((tmp_path / "edge").iterdir()) == []


def test_a_second_gateway_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    from edge.config import load_station
    from edge.datalock import DataDirLock

    station = write_station(
        tmp_path / "station.yaml",
        station_dict(cloud_url="http://127.0.0.1:9", data_dir=tmp_path / "edge", ports=[5020]),
    )
    assert gasiot("keys", "generate", str(tmp_path / "edge" / "gateway.key")).returncode == 0
    lock = DataDirLock(load_station(station).data_dir)  # as a running gateway holds it
    try:
        proc = gasiot("edge", "run", str(station))
    finally:
        lock.release()
    assert proc.returncode == 1 and "in use by another gasiot edge process" in proc.stderr


def test_cloud_refuses_plain_http_without_the_dev_flag(tmp_path: Path) -> None:
    proc = gasiot("cloud", "serve", "--db", f"sqlite:///{tmp_path / 'c.db'}", "--listen", "127.0.0.1:0")
    assert proc.returncode == 1 and "--insecure-dev" in proc.stderr


def test_hash_password_makes_a_hash_the_station_accepts(tmp_path: Path) -> None:
    from edge.northbound.config import OpcUaUserConfig
    from edge.northbound.users import verify_password

    result = subprocess.run(
        [sys.executable, "-m", "gasiot", "edge", "hash-password", "--stdin"],
        input="correct horse battery\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    stored = result.stdout.strip()
    assert "correct horse" not in stored and stored.startswith("scrypt$")
    assert verify_password("correct horse battery", stored) and not verify_password("correct horse", stored)
    assert OpcUaUserConfig(name="duty", role="operator", password_hash=stored).password_hash == stored
    short = subprocess.run(
        [sys.executable, "-m", "gasiot", "edge", "hash-password", "--stdin"],
        input="short\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert short.returncode == 1 and "at least 8" in short.stderr
