"""Smoke test of scripts/bench/opcua_fanout.py: `--quick` runs end to end (gateway, bare baseline and
client processes) and reports a delivery ratio.  No speed target is asserted here: the numbers
depend on the machine.  Skipped unless GASIOT_BENCH_SMOKE=1 (it starts 12 processes)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(os.environ.get("GASIOT_BENCH_SMOKE") != "1", reason="set GASIOT_BENCH_SMOKE=1")


def test_quick_run_reports_a_delivery_ratio() -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench" / "opcua_fanout.py"), "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,  # a bound on a hung run, not a speed target
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    # variables, rate, clients, security, feed, expected, delivered, delivery (the summary table)
    rows = re.findall(
        r"^\s*500\s+1Hz\s+3\s+None\s+(publish|store)\s+([\d,]+)\s+([\d,]+)\s+(\d\.\d{4})\s", run.stdout, re.M
    )
    assert {feed for feed, *_ in rows} == {"publish", "store"}, run.stdout
    for _, expected, delivered, ratio in rows:
        assert int(expected.replace(",", "")) == 500 * 5 * 3
        assert 0.0 <= float(ratio) <= 1.0
        assert float(ratio) == pytest.approx(int(delivered.replace(",", "")) / (500 * 5 * 3), abs=1e-4)
