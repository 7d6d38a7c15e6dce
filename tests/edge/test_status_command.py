"""`gasiot edge status` on a store in a known state: per-lane queue, oldest unsent record, last
ack and sync lag, and the active alarms — in the table and in `--json` (old keys kept)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from edge.alarms import persist
from edge.alarms.model import Alarm, AlarmState
from edge.config import load_station
from edge.runtime import STORE_FILE
from edge.store import SqliteStore
from gascore.records import Event, EventLevel, Lane, Reading
from support.station import station_dict, write_station


def status(station_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gasiot", "edge", "status", str(station_file), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    )


def frame(lane: Lane, seq: int, prev: str, rows: list[list[Any]]) -> tuple[bytes, str]:
    return f"{lane.value}-{seq}".encode(), f"{seq:064x}"


def alarm(aid: str, priority: str, state: AlarmState, **kw: Any) -> Alarm:
    device, rule = aid.split(".")
    return Alarm(aid, device, rule, priority, f"{rule} 报警", f"{rule} alarm", state=state, raised_ms=1_000, **kw)  # type: ignore[arg-type]


def test_status_shows_lanes_sync_lag_and_alarms(tmp_path: Path) -> None:
    station_file = write_station(
        tmp_path / "station.yaml",
        station_dict(cloud_url="http://127.0.0.1:9", data_dir=tmp_path / "edge", ports=[9]),
    )
    now = time.time_ns() // 1_000_000
    store = SqliteStore(load_station(station_file).data_dir / STORE_FILE)
    try:
        store.append([], [Event("dev0", "device_online", now - 60_000, EventLevel.INFO)] * 2)
        assert store.form_batch(Lane.EVENTS, 10, frame) is not None
        store.ack(Lane.EVENTS, 1, now_ms=now - 5_000)
        store.append([], [Event("dev0", "tamper", now - 20_000, EventLevel.MAJOR)])  # older than the ack
        store.append([Reading("dev0", "outlet_pressure", now - 30_000 + i, 0.3) for i in range(7)])
        alarms = [
            alarm("dev0.lel", "critical", AlarmState.ACTIVE_UNACKED),
            alarm("dev0.hi", "high", AlarmState.ACTIVE_ACKED, acked_ms=2_000, acked_by="li", ack_origin="edge"),
            alarm("dev0.lo", "low", AlarmState.CLEARED_UNACKED),
            alarm("dev0.door", "medium", AlarmState.NORMAL),
        ]

        def save_alarms(db: Any) -> None:
            persist.ensure_schema(db)
            persist.save(db, alarms)

        store.append([], also=save_alarms)
    finally:
        store.close()

    out = json.loads(status(station_file, "--json").stdout)
    # the keys scripts already read are unchanged
    assert out["buffered"] == {"events": 1, "telemetry": 7}
    assert out["next_seq"] == {"events": 2, "telemetry": 1}
    assert out["counters"]["telemetry_appended_total"] == 7 and "devices" in out
    assert "tls_certificate_days_left" in out
    at = out["now_ms"]
    assert at >= now
    assert out["oldest_unsent_ms"] == {"events": now - 20_000, "telemetry": now - 30_000}
    assert out["oldest_unsent_age_s"] == {"events": (at - now + 20_000) / 1000, "telemetry": (at - now + 30_000) / 1000}
    assert out["last_ack_ms"] == {"events": now - 5_000, "telemetry": None}
    # events: waiting since the last ack (the waiting record is older); telemetry: since it arrived
    assert out["sync_lag_s"] == {"events": (at - now + 5_000) / 1000, "telemetry": (at - now + 30_000) / 1000}
    assert out["alarms"]["active"] == 2 and out["alarms"]["unacked"] == 2
    assert out["alarms"]["by_priority"] == {"critical": 1, "high": 1, "medium": 0, "low": 0}
    assert [(a["id"], a["state"]) for a in out["alarms"]["top"]] == [
        ("dev0.lel", "active_unacked"),
        ("dev0.hi", "active_acked"),
    ]
    assert out["alarms"]["top"][0]["message_zh"] == "lel 报警"

    table = status(station_file).stdout
    assert "sync: what waits for the cloud" in table
    assert "alarms: 2 active (1 critical, 1 high), 2 unacknowledged" in table
    assert "critical dev0.lel  active_unacked" in table
    assert "never acked" not in table  # both lanes have records, so both have a lag
