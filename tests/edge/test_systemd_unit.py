"""configs/systemd/gasiot-edge.service: the hardening and restart policy are there, and systemd
itself accepts the unit (when systemd-analyze is installed; not a required peer)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.station import REPO_ROOT

UNIT = REPO_ROOT / "configs" / "systemd" / "gasiot-edge.service"
INSTALLED_PROGRAM = "/opt/gasiot/bin/gasiot"


def unit_settings() -> dict[str, dict[str, list[str]]]:
    """section → key → every value given (systemd keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


def test_unit_restarts_on_failure_and_is_hardened() -> None:
    unit = unit_settings()
    service = {k: v[-1] for k, v in unit["Service"].items()}
    assert service["User"] == "gasiot" and service["SupplementaryGroups"] == "dialout"
    assert service["Restart"] == "on-failure" and re.fullmatch(r"\d+s", service["RestartSec"])
    assert service["RestartPreventExitStatus"] == "2"  # an invalid station file: restarting cannot help
    assert unit["Unit"]["StartLimitIntervalSec"] == ["0"]
    assert service["ExecStart"].split()[:3] == [INSTALLED_PROGRAM, "edge", "run"]
    assert service["ExecStart"].endswith("--log-format json")
    expected = {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "AmbientCapabilities": "",
        "UMask": "0077",
        "DevicePolicy": "closed",
        "ReadWritePaths": "/var/lib/gasiot",
        "WorkingDirectory": "/var/lib/gasiot",
    }
    assert {k: service.get(k) for k in expected} == expected
    assert "/var/lib/" + service["StateDirectory"] == service["ReadWritePaths"]
    assert set(service["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert "char-ttyUSB rw" in unit["Service"]["DeviceAllow"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_the_command_line_of_the_unit_is_one_the_cli_accepts() -> None:
    _, *args = unit_settings()["Service"]["ExecStart"][-1].split()
    proc = subprocess.run(
        [sys.executable, "-m", "gasiot", *args[:2], "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and "--log-format" in proc.stdout


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    # verify also checks that ExecStart exists: point it at a program that does on this machine.
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text(encoding="utf-8").replace(INSTALLED_PROGRAM, sys.executable), encoding="utf-8")
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert UNIT.name not in proc.stderr, proc.stderr  # no warning about our unit
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(unit)], capture_output=True, text=True, timeout=60
    )
    if security.returncode != 0 and "offline" in security.stderr:
        pytest.skip("systemd-analyze security --offline needs systemd ≥ 250")
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", security.stdout)
    assert found, security.stdout + security.stderr
    assert float(found.group(1)) <= 2.0  # systemd calls < 2 "OK"; a stock service scores 9.6
