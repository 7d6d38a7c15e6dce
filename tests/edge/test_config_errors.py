"""Golden cases: each file in config_cases/ starts with `# expect: <text>`; loading it must fail
with an error naming that line and field (or succeed, for `OK`).  Lines count from the file's
first line, which is the comment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge.config import load_station
from gascore.yamldoc import ConfigError

CASES = sorted((Path(__file__).parent / "config_cases").glob("*.yaml"))


def expectation(path: Path) -> str:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: ")
    return first.removeprefix("# expect: ")


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_config_case(case: Path) -> None:
    expected = expectation(case)
    if expected == "OK":
        station = load_station(case)
        assert station.config.gateway.id == "gw-case"
        return
    with pytest.raises(ConfigError) as info:
        load_station(case)
    messages = [str(p) for p in info.value.problems]
    assert any(m.startswith(str(case)) and expected in m for m in messages), messages


def test_check_command_exits_nonzero_and_names_the_line() -> None:
    case = Path(__file__).parent / "config_cases" / "unit_mismatch.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "gasiot", "edge", "check", str(case)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert f"{case}{expectation(case)}" in proc.stderr


def test_check_command_accepts_the_shipped_station() -> None:
    station = Path(__file__).resolve().parents[2] / "configs" / "stations" / "demo-station.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "gasiot", "edge", "check", str(station)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "OK" in proc.stdout


def test_schema_command_prints_a_json_schema() -> None:
    import json

    proc = subprocess.run(
        [sys.executable, "-m", "gasiot", "edge", "schema"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    schema = json.loads(proc.stdout)
    assert schema["additionalProperties"] is False
    assert {"gateway", "channels", "devices"} <= set(schema["properties"])
