"""`gasiot provision` against a real `gasiot cloud serve`: single commands, and a CSV import that
keeps the good rows, reports each bad one with its line and reason, and prints the enrollment
tokens that work once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from gascore.crypto import generate_signer

CSV = """kind,id,org_id,station_id,name,type,lat,lon,address
# a comment line
org,north,,,北区,,,,
station,gs-01,north,,1号门站,gate,31.23,121.47,人民路100号
station,gs-02,nowhere,,2号站,gate,,,
station,gs-03,north,,3号站,gate,abc,1,
gateway,gw-0001,,gs-01,,,,,
gateway,gw-0002,,,,,,,
"""


def gasiot(*args: str, token: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GASIOT_TOKEN": token}
    return subprocess.run([sys.executable, "-m", "gasiot", *args], capture_output=True, text=True, timeout=60, env=env)


def test_import_and_single_commands(cloud_url: tuple[str, str], tmp_path: Path) -> None:
    url, admin = cloud_url
    source = tmp_path / "registry.csv"
    source.write_text(CSV, encoding="utf-8")
    report = tmp_path / "report.csv"
    run = gasiot("provision", "import", str(source), "--cloud", url, "--report", str(report), token=admin)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "3 of 6 rows imported, 3 failed" in run.stdout
    assert f"{source}:5 gs-02: failed — HTTP 400: no organisation 'nowhere'" in run.stderr
    assert f"{source}:6 gs-03: failed — lat: 'abc' is not a number" in run.stderr
    assert f"{source}:8 gw-0002: failed — a gateway needs station_id" in run.stderr
    assert "enrollment token (shown once): get_" in run.stdout
    assert report.read_text(encoding="utf-8").count("failed") == 3
    # The token enrolls gw-0001 once.
    token = run.stdout.split("enrollment token (shown once): ")[1].split()[0]
    enroll = subprocess.run(
        [sys.executable, "-m", "gasiot", "provision", "gateway", "gw-0009", "--station", "gs-01", "--cloud", url],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "GASIOT_TOKEN"},
    )
    assert enroll.returncode == 1 and "give --token or set GASIOT_TOKEN" in enroll.stderr
    single = gasiot("provision", "gateway", "gw-0009", "--station", "gs-01", "--cloud", url, token=admin)
    assert single.returncode == 0 and "gw-0009 at gs-01" in single.stdout
    again = gasiot("provision", "station", "gs-01", "--org", "north", "--type", "gate", "--cloud", url, token=admin)
    assert again.returncode == 1 and "exists" in again.stderr
    body = {
        "gateway_id": "gw-0001",
        "token": token,
        "alg": "sm2-sm3",
        "public_key": generate_signer().public_key_bytes().hex(),
    }
    assert post_json(f"{url}/v1/enroll", body) == 201
    assert post_json(f"{url}/v1/enroll", body) == 401  # once only


def post_json(url: str, body: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
